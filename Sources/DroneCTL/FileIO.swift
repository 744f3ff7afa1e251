#if canImport(Glibc)
import Glibc
#endif

/// Reads files (and standard input) whole, for `-d @FILE`, `@FILE` byte values and profiles.
public struct FileReader: Sendable {
    public init() {}

    /// The bytes of `path`; `-` is standard input.
    public func read(_ path: String) throws -> [UInt8] {
        if path == "-" { return try Self.readAll(fd: 0, name: "standard input") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ToolError("cannot read \(path): \(Self.errorText())") }
        defer { close(fd) }
        return try Self.readAll(fd: fd, name: path)
    }

    static func readAll(fd: Int32, name: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count == 0 { return bytes }
            if count < 0 {
                if errno == EINTR { continue }
                throw ToolError("cannot read \(name): \(errorText())")
            }
            bytes += chunk[0..<count]
        }
    }

    static func errorText() -> String { String(cString: strerror(errno)) }

    /// Whether `path` names a regular file (so it can be read twice: once to check it).
    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// Whether standard input is a regular file (a `< file` redirection).
    static var standardInputIsRegularFile: Bool {
        var info = stat()
        return fstat(0, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }
}

/// Writes to standard output and standard error with `write(2)`: no buffering to lose at exit,
/// and each message reaches the reader as soon as it is printed (a stream's line as it arrives).
public enum Terminal {
    /// Writes all of `bytes` to `fd`. A reader that went away (EPIPE: `dronectl ... | head`)
    /// ends the process quietly, as command-line tools do.
    public static func write(_ bytes: [UInt8], to fd: Int32 = 1) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE { exit(0) }
                return
            }
            offset += written
        }
    }

    public static func write(_ text: String, to fd: Int32 = 1) { write(Array(text.utf8), to: fd) }

    /// A line on standard error.
    public static func error(_ text: String) { write(Array((text + "\n").utf8), to: 2) }

    /// Whether `fd` is a terminal.
    public static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }
}
