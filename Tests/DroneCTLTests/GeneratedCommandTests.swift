import DroneCTLCommands
import Foundation
import ProtobufKit
import Testing
import TestSupport

/// The generated commands as a user meets them: help from the proto comments, usage errors
/// before anything is sent, exit codes, the configuration commands.
@Suite("Generated commands")
struct GeneratedCommandTests {
    let dronectl = Dronectl()

    /// Every `rpc` declared in the proto files dronectl is generated from, read from their text
    /// (not from the generated code): `/package.Service/Method`.
    static func declaredMethods() throws -> Set<String> {
        let proto = repositoryRoot.appendingPathComponent("proto")
        let domain = try FileManager.default.subpathsOfDirectory(atPath: proto.appendingPathComponent("fabrikam/dronedelivery").path)
            .filter { $0.hasSuffix(".proto") }.map { "fabrikam/dronedelivery/" + $0 }
        var methods: Set<String> = []
        for file in domain + ["grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto"] {
            let text = try String(contentsOf: proto.appendingPathComponent(file), encoding: .utf8)
            var package = ""
            var service = ""
            for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                let words = line.split(whereSeparator: { " ;{(".contains($0) })
                guard words.count >= 2 else { continue }
                switch words[0] {
                case "package": package = String(words[1])
                case "service": service = String(words[1])
                case "rpc": methods.insert("/\(package).\(service)/\(words[1])")
                default: break
                }
            }
        }
        return methods
    }

    /// Help text with its line breaks and indentation folded into single spaces, so a check
    /// does not depend on where the help was wrapped.
    static func unwrapped(_ text: String) -> String {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
    }

    @Test("a command per service and a kebab-case subcommand per RPC, for every method in proto/")
    func everyMethodHasACommand() throws {
        let declared = try Self.declaredMethods()
        let generated = Set(GeneratedCommands.methods.map(\.method.path))
        #expect(declared.count >= 50, "\(declared)")
        #expect(generated == declared, "no command: \(declared.subtracting(generated).sorted()); no rpc: \(generated.subtracting(declared).sorted())")
        for (path, method) in GeneratedCommands.methods {
            // kebab-case of the service (without "Service") and of the method.
            #expect(path[1] == Self.kebab(method.name), "\(path)")
            let help = try dronectl.run(path + ["--help"])
            #expect(help.status == 0, "\(path): \(help)")
            #expect(Self.unwrapped(help.output).contains("gRPC: \(method.path)"), "\(path): \(help.output)")
        }
    }

    static func kebab(_ name: String) -> String {
        var words: [String] = []
        var current = ""
        let characters = Array(name)
        for (index, character) in characters.enumerated() {
            let startsWord = character.isUppercase && index > 0
                && (characters[index - 1].isLowercase || (index + 1 < characters.count && characters[index + 1].isLowercase))
            if startsWord { words.append(current); current = "" }
            current.append(character)
        }
        words.append(current)
        return words.map { $0.lowercased() }.joined(separator: "-")
    }

    @Test("help comes from the proto comments: the method's, and each field's on its flag")
    func helpFromComments() throws {
        let help = try dronectl.run(["ingestion", "create-delivery", "--help"])
        let text = Self.unwrapped(help.output)
        #expect(text.contains("OVERVIEW: Accepts a new delivery request: assigns the delivery id"), "\(help)")
        #expect(text.contains("--package-info.weight <number>"))
        #expect(text.contains("Weight in kilograms."))
        #expect(text.contains("--expedited/--no-expedited"))
        #expect(text.contains("HTTP: POST /v1/deliveries (body: *)"))
        let top = try dronectl.run(["--help"])
        #expect(top.output.contains("delivery"))
        #expect(top.output.contains("Exit codes"))
    }

    @Test("usage errors exit 2 before anything is sent, naming the flag")
    func usageErrors() throws {
        // Nothing listens on port 1: a usage error must come before any connection attempt.
        let server = ["--server", "127.0.0.1:1"]
        let weight = try dronectl.run(["ingestion", "create-delivery", "--package-info.weight", "heavy"] + server)
        #expect(weight.status == 2, "\(weight)")
        #expect(weight.errors == "dronectl: --package-info.weight: expected a number, got \"heavy\"\n")
        let size = try dronectl.run(["ingestion", "create-delivery", "--package-info.size", "huge"] + server)
        #expect(size.status == 2)
        #expect(size.errors.contains("--package-info.size: expected one of PACKAGE_SIZE_UNSPECIFIED"))
        let data = try dronectl.run(["ingestion", "create-delivery", "-d", #"{"packageInfo": {"weight": true}}"#] + server)
        #expect(data.status == 2)
        #expect(data.errors == "dronectl: -d: packageInfo.weight: expected a number, got true\n", "\(data)")
        let syntax = try dronectl.run(["ingestion", "create-delivery", "-d", "{"] + server)
        #expect(syntax.status == 2)
        #expect(syntax.errors.contains("-d: invalid JSON at line 1"), "\(syntax)")
        let unknown = try dronectl.run(["delivery", "get-delivery", "--no-such-flag"] + server)
        #expect(unknown.status == 2)
        #expect(unknown.errors.contains("Unknown option '--no-such-flag'"), "\(unknown)")
        let tls = try dronectl.run(["delivery", "get-delivery", "--tls", "--cacert", "/nonexistent/ca.pem"] + server)
        #expect(tls.status == 2)
        #expect(tls.errors.contains("--cacert /nonexistent/ca.pem: cannot read the file"), "\(tls)")
        let noServer = try dronectl.run(["delivery", "get-delivery"])
        #expect(noServer.status == 2)
        #expect(noServer.errors.contains("no address for fabrikam.dronedelivery.delivery.v1.DeliveryService"))
        let httpOnly = try dronectl.run(["delivery", "report-drone-positions", "--transport", "http", "-d", "{}"] + server)
        #expect(httpOnly.status == 2)
        #expect(httpOnly.errors.contains("no google.api.http annotation"), "\(httpOnly)")
    }

    @Test("a server that cannot be reached is UNAVAILABLE (78), over either transport")
    func unreachable() throws {
        let grpc = try dronectl.run(["health", "check", "--server", "127.0.0.1:1"])
        #expect(grpc.status == 78, "\(grpc)")
        let http = try dronectl.run(["delivery", "get-delivery", "--delivery-id", "x", "--transport", "http", "--server", "127.0.0.1:1"])
        #expect(http.status == 78, "\(http)")
    }

    @Test("a generated command calls any server that serves its service")
    func generatedAgainstInteropServer() throws {
        let server = try TestServer.interop()
        defer { server.stop() }
        let check = try dronectl.run(["health", "check", "--server", server.address])
        #expect(check.status == 0, "\(check)")
        #expect(check.output == #"{"status":"SERVING"}"# + "\n")
        let missing = try dronectl.run(["health", "check", "--service", "no.such.Service", "--server", server.address])
        #expect(missing.status == 69, "\(missing)")
        let roundRobin = try dronectl.run(["health", "check", "--server", "127.0.0.1:1,\(server.address)"])
        #expect(roundRobin.status == 0, "\(roundRobin)")
    }

    @Test("config: set, list, use, show, current, delete; the context then routes calls")
    func configCommands() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-config-\(UUID().uuidString)")
        var dronectl = Dronectl()
        dronectl.environment["DRONECTL_CONFIG"] = folder.appendingPathComponent("config.json").path
        defer { try? FileManager.default.removeItem(at: folder) }
        let server = try TestServer.interop()
        defer { server.stop() }
        #expect(try dronectl.run(["config", "set", "dead", "--server", "127.0.0.1:1"]).status == 0)
        #expect(try dronectl.run(["config", "set", "live", "--server", "health=\(server.address)", "--api-key", "secret-key-123", "-H", "x-team: ops"]).status == 0)
        let listed = try dronectl.run(["config", "list"])
        #expect(listed.lines.count == 3, "\(listed)")
        #expect(listed.lines[1].hasPrefix("* dead"))
        #expect(try dronectl.run(["health", "check"]).status == 78)
        #expect(try dronectl.run(["config", "use", "live"]).status == 0)
        #expect(try dronectl.run(["config", "current"]).output == "live\n")
        let check = try dronectl.run(["health", "check", "-v"])
        #expect(check.status == 0, "\(check)")
        #expect(check.errors.contains("> authorization: Bearer secret-k... (14 characters)"), "\(check)")
        #expect(check.errors.contains("> x-team: ops"))
        let shown = try dronectl.run(["config", "show"])
        #expect(shown.output.contains(#""apiKey": "secret-k... (14 characters)""#), "\(shown)")
        #expect(!shown.output.contains("secret-key-123"))
        // The environment picks another context; a flag overrides the context's address.
        var withEnvironment = dronectl
        withEnvironment.environment["DRONECTL_CONTEXT"] = "dead"
        #expect(try withEnvironment.run(["health", "check"]).status == 78)
        #expect(try withEnvironment.run(["health", "check", "--server", server.address]).status == 0)
        #expect(try dronectl.run(["config", "use", "nope"]).status == 2)
        #expect(try dronectl.run(["config", "delete", "dead"]).status == 0)
        #expect(try dronectl.run(["config", "list"]).lines.count == 2)
    }
}
