#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GRPCProtos
import RPC
import ServiceKit
import Testing
import TestSupport

extension EndToEndTests {
    /// `--listen-host` (and `FABRIKAM_LISTEN_HOST`) chooses the address a process binds: containers
    /// set 0.0.0.0 so that other containers reach it; the default stays 127.0.0.1.
    @Suite("The listen address of a process")
    struct ListenAddressTests {
        @Test("Every service knows --listen-host; the environment sets it too; the default is 127.0.0.1")
        func configuration() throws {
            let flag = try Configuration(arguments: ["--listen-host", "0.0.0.0"], environment: [:], known: ["port"])
            #expect(flag.listenHost == "0.0.0.0")
            let environment = try Configuration(arguments: [], environment: ["FABRIKAM_LISTEN_HOST": "::"], known: [])
            #expect(environment.listenHost == "::")
            let neither = try Configuration(arguments: [], environment: [:], known: ["port"])
            #expect(neither.listenHost == "127.0.0.1")
        }

        @Test("A service started with --listen-host 127.0.0.2 answers health there and not on 127.0.0.1")
        func bindsTheGivenAddress() async throws {
            let data = try makeTemporaryDirectory("fabrikam-listen")
            defer { try? FileManager.default.removeItem(at: data) }
            let process = Process()
            process.executableURL = repositoryRoot.appendingPathComponent(".build/debug/package-service")
            process.arguments = ["--listen-host", "127.0.0.2", "--port", "0", "--data-dir", data.path]
            let log = data.appendingPathComponent("package.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            defer {
                process.terminate()
                process.waitUntilExit()
            }
            var port = 0
            try await waitFor("package-service to listen") {
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                guard let range = text.range(of: "listening on 127.0.0.2:") else { return false }
                port = Int(text[range.upperBound...].prefix { $0.isNumber }) ?? 0
                return port > 0
            }

            let bound = RPCClient(host: "127.0.0.2", port: port)
            defer { Task { await bound.close() } }
            // Deadlines of 60 s: bounds against a hang only. Under load a 5 s one could pass before
            // the call was answered, and the refused call would then end DEADLINE_EXCEEDED.
            let answer = try await Grpc.Health.V1.Health.Client(bound).check(.init(), options: CallOptions(timeout: .seconds(60)))
            #expect(answer.status == .serving)

            let loopback = RPCClient(host: "127.0.0.1", port: port)
            defer { Task { await loopback.close() } }
            let refused = await #expect(throws: RPCError.self) {
                _ = try await Grpc.Health.V1.Health.Client(loopback).check(.init(), options: CallOptions(timeout: .seconds(60)))
            }
            #expect(refused?.code == .unavailable)
        }
    }
}
