#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import ProtobufKit
import RPC

/// `dronectl contract verify --server host:port`: provider verification against the contract
/// (docs/contract-tests.md, "Provider verification"). The contract files come from the caller
/// (the dronectl executable passes the generated ones), so this module stays free of the
/// generated API.
public enum ContractCommandSupport {
    /// Runs the verification, prints the summary, writes the JUnit report; the exit code.
    public static func run(_ flags: ContractVerifyFlags, files: [ProtoFileMetadata]) async -> Int32 {
        do {
            let (host, port) = try flags.endpoint()
            var configuration = ContractVerifier.Configuration(host: host, port: port, files: files, statuses: flags.statuses)
            configuration.services = flags.service
            configuration.examples = !flags.examples.isEmpty ? flags.examples : (FileReader.isDirectory(ContractVerifyFlags.defaultExamples) ? [ContractVerifyFlags.defaultExamples] : [])
            configuration.timeout = try DurationText.parse(flags.timeout, flag: "--timeout")
            configuration.maxStreamResponses = flags.maxStreamResponses
            for header in flags.header {
                guard let colon = header.firstIndex(of: ":") else { throw UsageError("-H \(header): NAME: VALUE expected") }
                configuration.metadata.add(String(header[..<colon]), String(header[header.index(after: colon)...]).trimmingWhitespace)
            }
            let checks = try await ContractVerifier(configuration).run()
            Terminal.write(ContractReport.summary(checks, server: flags.server))
            if let path = flags.junit {
                try FileWriter.write(ContractReport.junit(checks, server: flags.server), to: path)
                Terminal.write("JUnit XML: \(path)\n")
            }
            if checks.isEmpty {
                Terminal.error("dronectl: nothing was verified: the server offers no service of the contract")
                return ExitStatus.failure
            }
            return checks.contains { $0.failure != nil } ? ExitStatus.failure : ExitStatus.ok
        } catch let error as UsageError {
            Terminal.error("dronectl: \(error.description)")
            return ExitStatus.usage
        } catch {
            Terminal.error("dronectl: \(error)")
            return ExitStatus.failure
        }
    }
}

public struct ContractVerifyFlags: ParsableArguments, Sendable {
    static let defaultExamples = "proto/fabrikam/dronedelivery/examples"

    @Option(help: ArgumentHelp("The server to verify.", valueName: "host:port"))
    public var server: String

    @Option(name: .customLong("service"), parsing: .singleValue,
            help: ArgumentHelp("A contract service to verify (repeatable; default: every one the server's reflection lists).", valueName: "name"))
    public var service: [String] = []

    @Option(name: .customLong("examples"), parsing: .singleValue,
            help: ArgumentHelp("Example scenarios: a .json file or a directory of them (repeatable; default: \(defaultExamples) when it exists).", valueName: "path"),
            completion: .file())
    public var examples: [String] = []

    @Option(help: ArgumentHelp("The statuses each method declares.", valueName: "file"), completion: .file(extensions: ["json"]))
    public var statuses = "proto/fabrikam/dronedelivery/statuses.json"

    @Option(help: ArgumentHelp("Write a JUnit XML report there.", valueName: "file"), completion: .file())
    public var junit: String?

    @Option(help: ArgumentHelp("Bound of every call (10s, 500ms).", valueName: "duration"))
    public var timeout = "10s"

    @Option(name: .customLong("max-stream-responses"),
            help: ArgumentHelp("Responses read from a server stream before the verification ends the call.", valueName: "n"))
    public var maxStreamResponses = 3

    @Option(name: [.customShort("H"), .customLong("header")], parsing: .singleValue,
            help: ArgumentHelp("Metadata sent with every call (repeatable).", valueName: "name: value"))
    public var header: [String] = []

    public init() {}

    func endpoint() throws -> (String, Int) {
        guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]), (1...65535).contains(port) else {
            throw UsageError("--server \(server): host:port expected")
        }
        var host = String(server[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}

extension FileReader {
    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }
}

enum FileWriter {
    static func write(_ text: String, to path: String) throws {
        guard let file = fopen(path, "w") else { throw ToolError("\(path): \(String(cString: strerror(errno)))") }
        defer { fclose(file) }
        let bytes = Array(text.utf8)
        guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw ToolError("\(path): \(String(cString: strerror(errno)))") }
    }
}
