import Foundation
import InteropTesting
@testable import RPC
import Testing
import TestSupport

/// Compression chosen by the server (gRPC's doc/compression.md): a handler asks for compressed
/// responses per call (`ServerContext.compressResponses`) or per message
/// (`ResponseWriter.write(_:compressed:)`), and gets them only when the client accepts gzip.
@Suite("Response compression chosen by the server", .serialized)
struct ResponseCompressionTests {
    @Test("interop server_compressed_unary and server_compressed_streaming: each response's flag as asked")
    func interopCases() async throws {
        try await withServer(interopTestServiceRouter()) { client, _ in
            for name in ["server_compressed_unary", "server_compressed_streaming"] {
                var lines: [String] = []
                let outcome = await InteropCases.run([name], client: client) { lines.append($0) }
                #expect(outcome.passed == 1 && outcome.failed == 0, "\(lines)")
            }
        }
    }

    @Test("a raw HTTP/2 client reads the flags from the frames, and gets none without gzip in grpc-accept-encoding")
    func rawClient() async throws {
        let server = RPCServer(router: interopTestServiceRouter(), options: .init())
        let port = try await server.start()
        defer { Task { await server.shutdown() } }
        let script = repositoryRoot.appendingPathComponent("tools/interop/h2_compression_check.py").path
        do {
            let output = String(decoding: try await run(projectPython, [script, "--port", String(port)]), as: UTF8.self)
            #expect(output.contains("6 passed, 0 failed"), "\(output)")
        } catch let failure as CommandFailure {
            Issue.record("raw HTTP/2 compression checks failed:\n\(failure.output)\(failure.errorOutput)")
        }
    }

    @Test("grpc-accept-encoding lists are read token by token", arguments: [
        ("identity,gzip", true), ("gzip", true), (" deflate , gzip ", true), ("identity", false), ("gzipx,deflate", false), ("", false),
    ])
    func acceptEncoding(value: String, accepts: Bool) {
        #expect(Compression.acceptsGzip(value) == accepts)
    }
}
