#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GRPCProtos
import InteropTesting
import ProtobufKit
import RPC
import Synchronization
import Testing

/// Keeps what the client hands over.
final class CollectingRecorder: CallRecorder {
    let calls = Mutex<[RecordedCall]>([])
    func record(_ call: RecordedCall) { calls.withLock { $0.append(call) } }
}

/// The raw material of consumer contracts (issue 14, item 4): a client with a recorder hands
/// over every call with its messages as sent and received and the status it ended with.
@Suite("Call recording for consumer contracts")
struct CallRecordingTests {
    @Test("unary, server-streaming and client-streaming calls are recorded with their messages and status; an error status too, a deadline as local")
    func recordsEveryKind() async throws {
        var router = interopTestServiceRouter()
        router.unary(Methods.EmptyCall.self) { _, _ in throw RPCError(.notFound, "no such thing") }
        let server = RPCServer(router: router)
        let port = try await server.start()
        let recorder = CollectingRecorder()
        let client = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.recorder = recorder })

        var unary = Grpc.Testing.SimpleRequest()
        unary.responseSize = 3
        let answer = try await client.unary(Methods.UnaryCall.self, unary)

        var streaming = Grpc.Testing.StreamingOutputCallRequest()
        streaming.responseParameters = (1...2).map { size in
            var parameter = Grpc.Testing.ResponseParameters()
            parameter.size = Int32(size)
            return parameter
        }
        let sizes = try await client.serverStreaming(Methods.StreamingOutputCall.self, streaming) { responses in
            var sizes: [Int] = []
            for try await response in responses { sizes.append(response.payload?.body.count ?? 0) }
            return sizes
        }
        #expect(sizes == [1, 2])

        let aggregate = try await client.clientStreaming(Methods.StreamingInputCall.self) { writer in
            for size in [4, 5] {
                var message = Grpc.Testing.StreamingInputCallRequest()
                var payload = Grpc.Testing.Payload()
                payload.body = [UInt8](repeating: 7, count: size)
                message.payload = payload
                try await writer.write(message)
            }
        }
        #expect(aggregate.message.aggregatedPayloadSize == 9)

        await #expect(throws: RPCError.self) { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }

        var slow = Grpc.Testing.StreamingOutputCallRequest()
        var late = Grpc.Testing.ResponseParameters()
        late.size = 1
        late.intervalUs = 2_000_000
        slow.responseParameters = [late]
        await #expect(throws: RPCError.self) {
            _ = try await client.serverStreaming(Methods.StreamingOutputCall.self, slow, options: CallOptions(timeout: .milliseconds(200))) { responses in
                for try await _ in responses {}
            }
        }

        let calls = recorder.calls.withLock { $0 }
        #expect(calls.map(\.method) == ["/grpc.testing.TestService/UnaryCall", "/grpc.testing.TestService/StreamingOutputCall",
                                        "/grpc.testing.TestService/StreamingInputCall", "/grpc.testing.TestService/EmptyCall",
                                        "/grpc.testing.TestService/StreamingOutputCall"])
        try #require(calls.count == 5)
        #expect(calls[0].requests == [try unary.serializedBytes()])
        #expect(calls[0].responses == [try answer.serializedBytes()])
        #expect(calls[0].code == .ok && !calls[0].local)
        #expect(calls[1].requests == [try streaming.serializedBytes()])
        #expect(try calls[1].responses.map { try Grpc.Testing.StreamingOutputCallResponse(serializedBytes: $0).payload?.body.count } == [1, 2])
        #expect(try calls[2].requests.map { try Grpc.Testing.StreamingInputCallRequest(serializedBytes: $0).payload?.body.count } == [4, 5])
        #expect(try calls[2].responses.map { try Grpc.Testing.StreamingInputCallResponse(serializedBytes: $0).aggregatedPayloadSize } == [9])
        #expect(calls[3].code == .notFound && calls[3].message == "no such thing" && !calls[3].local && calls[3].responses.isEmpty)
        #expect(calls[4].code == .deadlineExceeded)
        #expect(calls.map(\.startedAt) == calls.map(\.startedAt).sorted())
        await client.close()
        await server.shutdown()
    }

    @Test("FileCallRecorder writes one JSON line per call: consumer, method, hex messages, status")
    func fileLines() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fabrikam-recording-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let recorder = try #require(FileCallRecorder(directory: directory.path, consumer: "tester"))
        var call = RecordedCall(method: "/a.B/C", startedAt: 42)
        call.requests = [[0x0a, 0x01, 0x41]]
        call.code = .invalidArgument
        call.message = "bad \"name\"\n"
        recorder.record(call)
        recorder.record(RecordedCall(method: "/a.B/D", startedAt: 43))
        let text = try String(contentsOf: directory.appendingPathComponent("tester.\(getpid()).jsonl"), encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)
        let first = try #require(JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(first["consumer"] as? String == "tester")
        #expect(first["method"] as? String == "/a.B/C")
        #expect(first["started_ns"] as? Int == 42)
        #expect(first["requests"] as? [String] == ["0a0141"])
        #expect(first["code"] as? Int == 3)
        #expect(first["message"] as? String == "bad \"name\"\n")
        #expect(first["local"] as? Bool == false)
    }
}
