import Foundation
import GRPCProtos
import ProtobufKit
@testable import RPC
import Testing
import TestSupport

/// Rich errors: google.rpc.Status with typed details in `grpc-status-details-bin`, sent and read
/// by our runtime, and checked against grpcio (grpcio-status) in both directions.
@Suite("Rich errors (grpc-status-details-bin)", .serialized)
struct RichErrorTests {
    static let message = "the delivery request is invalid"

    /// The error both sides send: a BadRequest with two violations, an ErrorInfo, a RetryInfo.
    static func richError() throws -> RPCError {
        var error = RPCError(.invalidArgument, message)
        try error.addFieldViolation("package_info.weight", "must be more than 0")
        try error.addFieldViolation("dropoff_location", "is required", reason: "REQUIRED")
        var info = Google.Rpc.ErrorInfo()
        info.reason = "INVALID_DELIVERY"
        info.domain = "fabrikam.dronedelivery"
        info.metadata = ["delivery_id": "dlv-1"]
        try error.addDetail(info)
        var retry = Google.Rpc.RetryInfo()
        var delay = Google.Protobuf.Duration()
        delay.seconds = 2
        delay.nanos = 500_000_000
        retry.retryDelay = delay
        try error.addDetail(retry)
        return error
    }

    static func expectRichDetails(_ error: RPCError) throws {
        #expect(error.code == .invalidArgument)
        #expect(error.message == message)
        let badRequest = try #require(try error.detail(Google.Rpc.BadRequest.self))
        #expect(badRequest.fieldViolations.map(\.field) == ["package_info.weight", "dropoff_location"])
        #expect(badRequest.fieldViolations.map(\.description_) == ["must be more than 0", "is required"])
        #expect(badRequest.fieldViolations.map(\.reason) == ["", "REQUIRED"])
        let info = try #require(try error.detail(Google.Rpc.ErrorInfo.self))
        #expect(info.reason == "INVALID_DELIVERY" && info.domain == "fabrikam.dronedelivery" && info.metadata == ["delivery_id": "dlv-1"])
        let retry = try #require(try error.detail(Google.Rpc.RetryInfo.self))
        #expect(retry.retryDelay?.seconds == 2 && retry.retryDelay?.nanos == 500_000_000)
        #expect(try error.details(Google.Rpc.Help.self).isEmpty)
        #expect(error.details.count == 3)
    }

    static func richRouter() -> Router {
        var router = Router()
        router.unary(Methods.UnaryCall.self) { _, _ in throw try richError() }
        return router
    }

    @Test("details a handler throws reach our client, unary and streaming, Trailers-Only or after messages")
    func ourClientAndServer() async throws {
        var router = Self.richRouter()
        router.serverStreaming(Methods.StreamingOutputCall.self) { _, writer, _ in
            try await writer.write(Grpc.Testing.StreamingOutputCallResponse())
            throw try Self.richError()
        }
        try await withServer(router) { client, _ in
            let unary = try await #require(throws: RPCError.self) {
                _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest())
            }
            try Self.expectRichDetails(unary)
            let streaming = try await #require(throws: RPCError.self) {
                _ = try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest()) { responses in
                    for try await _ in responses {}
                }
            }
            try Self.expectRichDetails(streaming)
            // The trailer is not also handed out as metadata.
            #expect(unary.metadata.binaryValues(RPCError.detailsTrailer).isEmpty)
        }
    }

    @Test("a grpcio client reads the details our server sends (grpcio-status rpc_status.from_call)")
    func grpcioClientReadsOurs() async throws {
        let server = RPCServer(router: Self.richRouter(), options: .init())
        let port = try await server.start()
        defer { Task { await server.shutdown() } }
        let script = repositoryRoot.appendingPathComponent("tools/interop/grpcio_rich_errors.py").path
        do {
            let output = String(decoding: try await run(projectPython, [script, "client", "--port", String(port)]), as: UTF8.self)
            #expect(output.contains("2 passed, 0 failed"), "\(output)")
        } catch let failure as CommandFailure {
            Issue.record("grpcio client:\n\(failure.output)\(failure.errorOutput)")
        }
    }

    @Test("our client reads the details a grpcio server sends; details whose code disagrees are refused, and said so")
    func ourClientReadsGrpcio() async throws {
        let server = try await PythonServer(script: "tools/interop/grpcio_rich_errors.py", arguments: ["server", "--port", "0"])
        defer { server.stop() }
        let client = RPCClient(host: "127.0.0.1", port: server.port)
        defer { Task { await client.close() } }
        let error = try await #require(throws: RPCError.self) {
            _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(timeout: .seconds(10)))
        }
        try Self.expectRichDetails(error)

        let mismatched = try await #require(throws: RPCError.self) {
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(10)))
        }
        #expect(mismatched.code == .notFound)
        #expect(mismatched.details.isEmpty)
        #expect(mismatched.message.hasPrefix("no such delivery"), "\(mismatched.message)")
        #expect(mismatched.message.contains("grpc-status-details-bin ignored: its code 9 is not grpc-status 5"), "\(mismatched.message)")
    }

    @Test("the trailer agrees with grpc-status and grpc-message, and is left out without details")
    func trailerAgrees() throws {
        var error = try Self.richError()
        let status = try Google.Rpc.Status(serializedBytes: try #require(error.statusDetailsTrailer))
        #expect(status.code == 3 && status.message == Self.message && status.details == error.details)
        #expect(RPCError(status: status) == RPCError(.invalidArgument, Self.message, details: error.details))
        error.details = []
        #expect(error.statusDetailsTrailer == nil)
        // A message with U+0000 (fine in grpc-message, percent-encoded) still yields a trailer.
        var nul = RPCError(.internal, "a\u{0}b")
        try nul.addDetail(Google.Rpc.DebugInfo())
        let withNul = try Google.Rpc.Status(serializedBytes: try #require(nul.statusDetailsTrailer))
        #expect(withNul.message == "a\u{FFFD}b" && withNul.code == 13)
    }
}

/// A Python server started for one test. Its port is read from a file the server writes once
/// it listens, polled without blocking a thread of the concurrency pool.
final class PythonServer {
    let process = Process()
    let port: Int

    struct StartFailure: Error {
        let script: String
    }

    init(script: String, arguments: [String]) async throws {
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("python-server-\(UUID().uuidString).port")
        process.executableURL = URL(fileURLWithPath: projectPython)
        process.arguments = [repositoryRoot.appendingPathComponent(script).path] + arguments + ["--port-file", portFile.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { try? FileManager.default.removeItem(at: portFile) }
        for _ in 0..<200 {
            if let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text) {
                self.port = port
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(process.processIdentifier, SIGKILL)
        throw StartFailure(script: script)
    }

    /// SIGKILL: grpcio's server does not always leave on SIGTERM. No wait here, which would
    /// block a thread of the pool.
    func stop() {
        kill(process.processIdentifier, SIGKILL)
    }
}
