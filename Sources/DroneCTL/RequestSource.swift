#if canImport(Glibc)
import Glibc
#endif
import NIOPosix
import ProtobufKit

/// Where a call's request documents come from: `-d '{...}'`, `-d @FILE`, `-d @-`, or nowhere
/// (the flags alone make the request).
///
/// A call with one request reads one JSON document. A client stream reads NDJSON: one document
/// per line, blank lines skipped. Text and files are read whole (and a stream's every line is
/// checked before the call starts); a pipe or terminal on standard input is read line by line as
/// the call runs, so a bidirectional call can be typed at.
public struct RequestSource: Sendable {
    enum Origin: Sendable {
        case none
        case bytes([UInt8], name: String)
        /// Standard input that is a pipe or a terminal.
        case liveInput
    }

    let origin: Origin

    public init(data: String?, files: FileReader = FileReader()) throws {
        guard let data else { origin = .none; return }
        if data == "@-" {
            origin = FileReader.standardInputIsRegularFile
                ? .bytes(try FileReader.readAll(fd: 0, name: "standard input"), name: "-d @-")
                : .liveInput
        } else if data.hasPrefix("@") {
            origin = .bytes(try files.read(String(data.dropFirst())), name: "-d \(data)")
        } else {
            origin = .bytes(Array(data.utf8), name: "-d")
        }
    }

    /// Whether the documents can be read ahead (and so checked before anything is sent).
    var isReadAhead: Bool {
        if case .liveInput = origin { return false }
        return true
    }

    /// The one document of a call with one request (nil: no -d).
    func single() throws -> (JSONValue?, String) {
        switch origin {
        case .none: return (nil, "-d")
        case .bytes(let bytes, let name): return (try Self.parse(bytes[...], name: name), name)
        case .liveInput:
            let bytes = try FileReader.readAll(fd: 0, name: "standard input")
            return (try Self.parse(bytes[...], name: "-d @-"), "-d @-")
        }
    }

    static func parse(_ bytes: ArraySlice<UInt8>, name: String) throws -> JSONValue {
        do {
            return try Array(bytes).withUnsafeBytes { try JSONParser.parse($0) }
        } catch {
            throw UsageError("\(name): \(error)")
        }
    }

    /// The documents of a client stream, one by one.
    func lines() -> Lines { Lines(origin: origin) }

    /// Reads NDJSON documents in order.
    struct Lines {
        let origin: Origin
        var offset = 0
        var lineNumber = 0
        var reader = LineReader(fd: 0)

        init(origin: Origin) { self.origin = origin }

        /// The next document and where it came from (`-d @f line 3`), or nil at the end.
        mutating func next() async throws -> (JSONValue, String)? {
            while true {
                let line: ArraySlice<UInt8>
                let name: String
                switch origin {
                case .none:
                    // No -d: a stream of one request made by the flags.
                    guard lineNumber == 0 else { return nil }
                    lineNumber = 1
                    return (.object([]), "flags")
                case .bytes(let bytes, let source):
                    guard offset < bytes.count else { return nil }
                    let end = bytes[offset...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                    line = bytes[offset..<end]
                    offset = end + 1
                    name = source
                case .liveInput:
                    guard let next = try await reader.nextLine() else { return nil }
                    line = next[...]
                    name = "-d @-"
                }
                lineNumber += 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                let source = "\(name) line \(lineNumber)"
                return (try RequestSource.parse(line, name: source), source)
            }
        }
    }
}

/// Reads lines from a file descriptor that may block (a pipe, a terminal) on NIO's thread
/// pool, so neither the event loops nor the concurrency pool wait on a person typing.
struct LineReader {
    let fd: Int32
    var buffer: [UInt8] = []
    var ended = false

    init(fd: Int32) { self.fd = fd }

    mutating func nextLine() async throws -> [UInt8]? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                return line
            }
            if ended {
                if buffer.isEmpty { return nil }
                defer { buffer = [] }
                return buffer
            }
            let fd = self.fd
            let chunk = try await NIOThreadPool.singleton.runIfActive { () throws -> [UInt8] in
                var bytes = [UInt8](repeating: 0, count: 65536)
                while true {
                    let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if count >= 0 { return Array(bytes[0..<count]) }
                    if errno != EINTR { throw ToolError("cannot read standard input: \(FileReader.errorText())") }
                }
            }
            if chunk.isEmpty { ended = true } else { buffer += chunk }
        }
    }
}
