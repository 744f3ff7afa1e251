import Foundation
import Testing
import TestSupport

/// `dronectl list`, `describe` and `call` against servers known only by reflection (our
/// interop server: v1; grpcio with grpcio-reflection: v1alpha only) or by files (grpcio with
/// reflection off: --proto and --protoset). All four call shapes, statuses, metadata, deadlines.
@Suite("Dynamic mode", .serialized)
final class DynamicModeTests {
    let ours: TestServer
    let grpcio: TestServer
    let dronectl = Dronectl()

    init() throws {
        ours = try TestServer.interop()
        grpcio = try TestServer.grpcio(reflection: true)
    }

    deinit {
        ours.stop()
        grpcio.stop()
    }

    @Test("list: services by reflection v1 (ours) and v1alpha (grpcio), and a service's methods")
    func list() throws {
        let services = try dronectl.run(["list", "--server", ours.address])
        #expect(services.status == 0, "\(services)")
        #expect(services.lines.contains("grpc.testing.TestService"))
        #expect(services.lines.contains("grpc.health.v1.Health"))
        #expect(services.lines.contains("grpc.reflection.v1.ServerReflection"))
        let theirs = try dronectl.run(["list", "--server", grpcio.address])
        #expect(theirs.status == 0, "\(theirs)")
        #expect(theirs.lines == ["grpc.reflection.v1alpha.ServerReflection", "grpc.testing.TestService"])
        let methods = try dronectl.run(["list", "grpc.testing.TestService", "--server", grpcio.address])
        #expect(methods.lines.contains("grpc.testing.TestService/FullDuplexCall"))
        #expect(methods.lines.contains("grpc.testing.TestService/UnaryCall"))
    }

    @Test("describe: a service, a method and a message in proto syntax")
    func describe() throws {
        let service = try dronectl.run(["describe", "grpc.testing.TestService", "--server", grpcio.address])
        #expect(service.status == 0, "\(service)")
        #expect(service.output.contains("service grpc.testing.TestService {"))
        #expect(service.output.contains("rpc FullDuplexCall(stream .grpc.testing.StreamingOutputCallRequest) returns (stream .grpc.testing.StreamingOutputCallResponse);"))
        let method = try dronectl.run(["describe", "grpc.testing.TestService/UnaryCall", "--server", ours.address])
        #expect(method.output == "rpc UnaryCall(.grpc.testing.SimpleRequest) returns (.grpc.testing.SimpleResponse);\n", "\(method)")
        let message = try dronectl.run(["describe", "grpc.testing.Payload", "--server", ours.address])
        #expect(message.output.contains("message grpc.testing.Payload {"), "\(message)")
        #expect(message.output.contains("bytes body = 2;"))
        let unknown = try dronectl.run(["describe", "grpc.testing.Nope", "--server", ours.address])
        #expect(unknown.status == 69, "\(unknown)")
    }

    @Test("unary: the same JSON from both servers")
    func unary() throws {
        let request = #"{"responseSize": 4, "payload": {"body": "AAEC"}}"#
        var answers: [String] = []
        for server in [ours, grpcio] {
            let result = try dronectl.run(["call", "grpc.testing.TestService/UnaryCall", "--server", server.address, "-d", request])
            #expect(result.status == 0, "\(result)")
            answers.append(result.output)
        }
        #expect(answers[0] == #"{"payload":{"body":"AAAAAA=="}}"# + "\n")
        #expect(answers[0] == answers[1])
    }

    @Test("server streaming: one message per line, as they arrive")
    func serverStreaming() throws {
        let request = #"{"responseParameters": [{"size": 1}, {"size": 2}, {"size": 3}]}"#
        for server in [ours, grpcio] {
            let result = try dronectl.run(["call", "grpc.testing.TestService/StreamingOutputCall", "--server", server.address, "-d", request])
            #expect(result.status == 0, "\(result)")
            #expect(result.lines == [#"{"payload":{"body":"AA=="}}"#, #"{"payload":{"body":"AAA="}}"#, #"{"payload":{"body":"AAAA"}}"#])
        }
    }

    @Test("client streaming: NDJSON from a file and from standard input")
    func clientStreaming() throws {
        let lines = "{\"payload\": {\"body\": \"AAAA\"}}\n\n{\"payload\": {\"body\": \"AAAAAAAA\"}}\n"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-stream-\(getpid()).ndjson")
        try lines.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        for server in [ours, grpcio] {
            let fromFile = try dronectl.run(["call", "grpc.testing.TestService/StreamingInputCall", "--server", server.address, "-d", "@" + file.path])
            #expect(fromFile.output == #"{"aggregatedPayloadSize":9}"# + "\n", "\(fromFile)")
            let fromInput = try dronectl.run(["call", "grpc.testing.TestService/StreamingInputCall", "--server", server.address, "-d", "@-"], input: lines)
            #expect(fromInput.output == fromFile.output, "\(fromInput)")
        }
    }

    @Test("bidirectional: responses for each request line")
    func bidirectional() throws {
        let input = (1...3).map { #"{"responseParameters": [{"size": \#($0)}]}"# }.joined(separator: "\n") + "\n"
        for server in [ours, grpcio] {
            let result = try dronectl.run(["call", "grpc.testing.TestService/FullDuplexCall", "--server", server.address, "-d", "@-"], input: input)
            #expect(result.status == 0, "\(result)")
            #expect(result.lines.count == 3)
        }
    }

    @Test("a bad request line is a usage error naming the line and path; nothing is sent for a file")
    func badStreamLine() throws {
        let result = try dronectl.run(["call", "grpc.testing.TestService/StreamingInputCall", "--server", ours.address,
                                       "-d", "{\"payload\": {}}\n{\"payload\": {\"body\": 7}}"])
        #expect(result.status == 2, "\(result)")
        #expect(result.errors.contains("-d line 2: payload.body: expected base64 bytes, got 7"), "\(result)")
    }

    @Test("statuses: exit 64 + code, the status on standard error")
    func statuses() throws {
        let notFound = try dronectl.run(["call", "grpc.testing.TestService/UnaryCall", "--server", grpcio.address,
                                         "-d", #"{"responseStatus": {"code": 5, "message": "gone"}}"#])
        #expect(notFound.status == 69, "\(notFound)")
        #expect(notFound.errors.contains("NOT_FOUND: gone"))
        let unimplemented = try dronectl.run(["call", "grpc.testing.TestService/UnimplementedCall", "--server", ours.address, "-d", "{}"])
        #expect(unimplemented.status == 76, "\(unimplemented)")
        let unreachable = try dronectl.run(["call", "grpc.testing.TestService/EmptyCall", "--server", "127.0.0.1:1", "--protoset", try protoset(), "-d", "{}"])
        #expect(unreachable.status == 78, "\(unreachable)")
    }

    @Test("--timeout is the call's deadline: DEADLINE_EXCEEDED (68)")
    func deadline() throws {
        // The message is 30 s away, so "the deadline ended it" and "it waited for the message" stay
        // far apart however slowly the process starts on a loaded machine (with 3 s, starting
        // dronectl and its call could take most of that).
        let slow = #"{"responseParameters": [{"size": 1, "intervalUs": 30000000}]}"#
        let started = ContinuousClock.now
        let result = try dronectl.run(["call", "grpc.testing.TestService/StreamingOutputCall", "--server", ours.address, "--timeout", "300ms", "-d", slow])
        #expect(result.status == 68, "\(result)")
        #expect(ContinuousClock.now - started < .seconds(20))
    }

    @Test("the envelope: headers, every message, trailers and status in one document; -v on standard error")
    func envelope() throws {
        let result = try dronectl.run(["call", "grpc.testing.TestService/StreamingOutputCall", "--server", ours.address, "-o", "envelope", "-v",
                                       "-H", "x-grpc-test-echo-initial: hello", "-H", "x-grpc-test-echo-trailing-bin: AAEC",
                                       "-d", #"{"responseParameters": [{"size": 1}, {"size": 2}]}"#])
        #expect(result.status == 0, "\(result)")
        let document = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        let headers = document?["headers"] as? [String: [String]]
        #expect(headers?["x-grpc-test-echo-initial"] == ["hello"])
        #expect((document?["messages"] as? [Any])?.count == 2)
        #expect((document?["trailers"] as? [String: [String]])?["x-grpc-test-echo-trailing-bin"] == ["AAEC"])
        #expect((document?["status"] as? [String: Any])?["name"] as? String == "OK")
        #expect(result.errors.contains("> POST /grpc.testing.TestService/StreamingOutputCall"))
        #expect(result.errors.contains("< x-grpc-test-echo-initial: hello"))
        #expect(result.errors.contains("2 messages"))

        let failed = try dronectl.run(["call", "grpc.testing.TestService/UnaryCall", "--server", ours.address, "-o", "envelope",
                                       "-d", #"{"responseStatus": {"code": 9, "message": "not now"}}"#])
        #expect(failed.status == 73)
        let status = (try JSONSerialization.jsonObject(with: Data(failed.output.utf8)) as? [String: Any])?["status"] as? [String: Any]
        #expect(status?["code"] as? Int == 9)
        #expect(status?["message"] as? String == "not now")
    }

    @Test("reflection off: .proto files (compiled with protoc) and protoset files")
    func filesInsteadOfReflection() throws {
        let bare = try TestServer.grpcio(reflection: false)
        defer { bare.stop() }
        let noReflection = try dronectl.run(["list", "--server", bare.address])
        #expect(noReflection.status == 76, "\(noReflection)")
        let proto = repositoryRoot.appendingPathComponent("proto").path
        let viaProto = try dronectl.run(["call", "grpc.testing.TestService/UnaryCall", "--server", bare.address,
                                         "--proto", "grpc/testing/test.proto", "-I", proto, "-d", #"{"responseSize": 2}"#])
        #expect(viaProto.output == #"{"payload":{"body":"AAA="}}"# + "\n", "\(viaProto)")
        let viaProtoset = try dronectl.run(["call", "grpc.testing.TestService/UnaryCall", "--server", bare.address,
                                            "--protoset", try protoset(), "-d", #"{"responseSize": 2}"#])
        #expect(viaProtoset.output == viaProto.output, "\(viaProtoset)")
        let listed = try dronectl.run(["list", "--protoset", try protoset()])
        #expect(listed.lines.contains("grpc.testing.TestService"))
    }

    @Test("text output")
    func textOutput() throws {
        let result = try dronectl.run(["call", "grpc.testing.TestService/UnaryCall", "--server", ours.address, "-o", "text", "--emit-defaults",
                                       "-d", #"{"responseSize": 1, "fillUsername": true}"#])
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("payload:\n  type: COMPRESSABLE\n  body: AA=="), "\(result)")
    }

    /// A FileDescriptorSet of the interop protos, made with protoc.
    func protoset() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-interop-\(getpid()).protoset").path
        if !FileManager.default.fileExists(atPath: path) {
            try runBlocking("/usr/bin/protoc", ["-I", repositoryRoot.appendingPathComponent("proto").path, "--include_imports",
                                        "--descriptor_set_out=" + path, "grpc/testing/test.proto"])
        }
        return path
    }
}
