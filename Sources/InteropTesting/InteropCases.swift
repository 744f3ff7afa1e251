// The gRPC interop client test cases (doc/interop-test-descriptions.md of the gRPC project),
// run by our client against any TestService server: ours, grpcio's, grpc C++'s.

import GRPCProtos
import ProtobufKit
import RPC

/// A failed expectation inside an interop case.
public struct InteropFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw InteropFailure(message()) }
}

/// Expects `body` to fail with status `code` (and `message`, if given).
func expectStatus(_ code: RPCError.Code, message: String? = nil, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as RPCError {
        try expect(error.code == code, "status \(error.code), want \(code) (\(error.message))")
        if let message { try expect(error.message == message, "message \(error.message.debugDescription), want \(message.debugDescription)") }
        return
    }
    throw InteropFailure("the call succeeded, want \(code)")
}

public enum InteropCases {
    typealias Methods = Testing.TestService.Method

    /// Every case, in the order the interop descriptions list them.
    public static let all: [(name: String, run: @Sendable (RPCClient) async throws -> Void)] = [
        ("empty_unary", emptyUnary), ("large_unary", largeUnary), ("client_streaming", clientStreaming),
        ("server_streaming", serverStreaming), ("ping_pong", pingPong), ("empty_stream", emptyStream),
        ("custom_metadata", customMetadata), ("status_code_and_message", statusCodeAndMessage),
        ("special_status_message", specialStatusMessage), ("unimplemented_method", unimplementedMethod),
        ("unimplemented_service", unimplementedService), ("cancel_after_begin", cancelAfterBegin),
        ("cancel_after_first_response", cancelAfterFirstResponse), ("timeout_on_sleeping_server", timeoutOnSleepingServer),
        ("client_compressed_unary", clientCompressedUnary), ("server_compressed_unary", serverCompressedUnary),
        ("client_compressed_streaming", clientCompressedStreaming), ("server_compressed_streaming", serverCompressedStreaming),
    ]

    static let deadline = CallOptions(timeout: .seconds(10))

    static func simpleRequest(responseSize: Int32, payloadSize: Int) -> Testing.SimpleRequest {
        var request = Testing.SimpleRequest()
        request.responseType = .compressable
        request.responseSize = responseSize
        request.payload = payload(size: payloadSize)
        return request
    }

    static func streamingRequest(_ sizes: [Int32], payloadSize: Int = 0) -> Testing.StreamingOutputCallRequest {
        var request = Testing.StreamingOutputCallRequest()
        request.responseParameters = sizes.map { size in
            var parameter = Testing.ResponseParameters()
            parameter.size = size
            return parameter
        }
        if payloadSize > 0 { request.payload = payload(size: payloadSize) }
        return request
    }

    @Sendable static func emptyUnary(_ client: RPCClient) async throws {
        let response = try await client.unary(Methods.EmptyCall.self, Testing.Empty(), options: deadline)
        try expect(response == Testing.Empty(), "response is not empty")
    }

    @Sendable static func largeUnary(_ client: RPCClient) async throws {
        let response = try await client.unary(Methods.UnaryCall.self, simpleRequest(responseSize: 314_159, payloadSize: 271_828), options: deadline)
        try expect(response.payload?.body.count == 314_159, "payload of \(response.payload?.body.count ?? 0) bytes, want 314159")
        try expect(response.payload?.body.allSatisfy { $0 == 0 } == true, "payload is not all zeros")
    }

    @Sendable static func clientStreaming(_ client: RPCClient) async throws {
        let response = try await client.clientStreaming(Methods.StreamingInputCall.self, options: deadline) { writer in
            for size in [27_182, 8, 1_828, 45_904] {
                var request = Testing.StreamingInputCallRequest()
                request.payload = payload(size: size)
                try await writer.write(request)
            }
        }
        try expect(response.message.aggregatedPayloadSize == 74_922, "aggregated \(response.message.aggregatedPayloadSize), want 74922")
    }

    @Sendable static func serverStreaming(_ client: RPCClient) async throws {
        let sizes = try await client.serverStreaming(Methods.StreamingOutputCall.self, streamingRequest([31_415, 9, 2_653, 58_979]), options: deadline) { responses in
            var sizes: [Int] = []
            for try await response in responses { sizes.append(response.payload?.body.count ?? 0) }
            return sizes
        }
        try expect(sizes == [31_415, 9, 2_653, 58_979], "response sizes \(sizes)")
    }

    @Sendable static func pingPong(_ client: RPCClient) async throws {
        let pairs: [(Int32, Int)] = [(31_415, 27_182), (9, 8), (2_653, 1_828), (58_979, 45_904)]
        try await client.bidirectional(Methods.FullDuplexCall.self, options: deadline) { writer, responses in
            var iterator = responses.makeAsyncIterator()
            for (responseSize, payloadSize) in pairs {
                try await writer.write(streamingRequest([responseSize], payloadSize: payloadSize))
                let response = try await iterator.next()
                try expect(response?.payload?.body.count == Int(responseSize), "response of \(response?.payload?.body.count ?? -1) bytes, want \(responseSize)")
            }
            writer.finish()
            try expect(try await iterator.next() == nil, "more responses than requests")
        }
    }

    @Sendable static func emptyStream(_ client: RPCClient) async throws {
        try await client.bidirectional(Methods.FullDuplexCall.self, options: deadline) { writer, responses in
            writer.finish()
            var count = 0
            for try await _ in responses { count += 1 }
            try expect(count == 0, "\(count) responses to no requests")
        }
    }

    @Sendable static func customMetadata(_ client: RPCClient) async throws {
        var metadata = Metadata()
        metadata.add("x-grpc-test-echo-initial", "test_initial_metadata_value")
        metadata.add("x-grpc-test-echo-trailing-bin", binary: [0xab, 0xab, 0xab])
        let options = CallOptions(timeout: .seconds(10), metadata: metadata)
        let unary = try await client.unaryWithMetadata(Methods.UnaryCall.self, simpleRequest(responseSize: 314_159, payloadSize: 271_828), options: options)
        try expect(unary.initialMetadata["x-grpc-test-echo-initial"] == "test_initial_metadata_value", "initial metadata not echoed (unary)")
        try expect(unary.trailingMetadata.binaryValues("x-grpc-test-echo-trailing-bin") == [[0xab, 0xab, 0xab]], "trailing metadata not echoed (unary)")
        try await client.bidirectional(Methods.FullDuplexCall.self, options: options) { writer, responses in
            try await writer.write(streamingRequest([314_159], payloadSize: 271_828))
            writer.finish()
            for try await _ in responses {}
            try expect(responses.initialMetadata["x-grpc-test-echo-initial"] == "test_initial_metadata_value", "initial metadata not echoed (stream)")
            try expect(responses.trailingMetadata.binaryValues("x-grpc-test-echo-trailing-bin") == [[0xab, 0xab, 0xab]], "trailing metadata not echoed (stream)")
        }
    }

    static func echoStatus(_ code: Int32, _ message: String) -> Testing.EchoStatus {
        var status = Testing.EchoStatus()
        status.code = code
        status.message = message
        return status
    }

    @Sendable static func statusCodeAndMessage(_ client: RPCClient) async throws {
        let message = "test status message"
        var request = Testing.SimpleRequest()
        request.responseStatus = echoStatus(2, message)
        try await expectStatus(.unknown, message: message) { _ = try await client.unary(Methods.UnaryCall.self, request, options: deadline) }
        var streaming = Testing.StreamingOutputCallRequest()
        streaming.responseStatus = echoStatus(2, message)
        try await expectStatus(.unknown, message: message) {
            try await client.bidirectional(Methods.FullDuplexCall.self, options: deadline) { writer, responses in
                try await writer.write(streaming)
                writer.finish()
                for try await _ in responses {}
            }
        }
    }

    @Sendable static func specialStatusMessage(_ client: RPCClient) async throws {
        let message = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
        var request = Testing.SimpleRequest()
        request.responseStatus = echoStatus(2, message)
        try await expectStatus(.unknown, message: message) { _ = try await client.unary(Methods.UnaryCall.self, request, options: deadline) }
    }

    @Sendable static func unimplementedMethod(_ client: RPCClient) async throws {
        try await expectStatus(.unimplemented) { _ = try await client.unary(Methods.UnimplementedCall.self, Testing.Empty(), options: deadline) }
    }

    @Sendable static func unimplementedService(_ client: RPCClient) async throws {
        try await expectStatus(.unimplemented) {
            _ = try await client.unary(Testing.UnimplementedService.Method.UnimplementedCall.self, Testing.Empty(), options: deadline)
        }
    }

    @Sendable static func cancelAfterBegin(_ client: RPCClient) async throws {
        let task = Task {
            try await client.clientStreaming(Methods.StreamingInputCall.self, options: deadline) { _ in
                try await Task.sleep(for: .seconds(30))
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        try await expectStatus(.cancelled) { _ = try await task.value }
    }

    @Sendable static func cancelAfterFirstResponse(_ client: RPCClient) async throws {
        let task = Task {
            try await client.bidirectional(Methods.FullDuplexCall.self, options: deadline) { writer, responses in
                try await writer.write(streamingRequest([31_415], payloadSize: 27_182))
                var iterator = responses.makeAsyncIterator()
                _ = try await iterator.next()
                withUnsafeCurrentTask { $0?.cancel() }
                _ = try await iterator.next()
                try await Task.sleep(for: .seconds(30))
            }
        }
        try await expectStatus(.cancelled) { _ = try await task.value }
    }

    @Sendable static func timeoutOnSleepingServer(_ client: RPCClient) async throws {
        try await expectStatus(.deadlineExceeded) {
            try await client.bidirectional(Methods.FullDuplexCall.self, options: CallOptions(timeout: .milliseconds(1))) { writer, responses in
                try? await writer.write(streamingRequest([], payloadSize: 27_182))
                for try await _ in responses {}
            }
        }
    }

    static func boolValue(_ value: Bool) -> Testing.BoolValue {
        var wrapped = Testing.BoolValue()
        wrapped.value = value
        return wrapped
    }

    @Sendable static func clientCompressedUnary(_ client: RPCClient) async throws {
        var probe = simpleRequest(responseSize: 314_159, payloadSize: 271_828)
        probe.expectCompressed = boolValue(true)
        // The probe: a server that checks compression must refuse an uncompressed request.
        try await expectStatus(.invalidArgument) { _ = try await client.unary(Methods.UnaryCall.self, probe, options: deadline) }
        let compressed = try await client.unary(Methods.UnaryCall.self, probe, options: CallOptions(timeout: .seconds(10), compressRequests: true))
        try expect(compressed.payload?.body.count == 314_159, "compressed request: wrong response size")
        var plain = probe
        plain.expectCompressed = boolValue(false)
        let uncompressed = try await client.unary(Methods.UnaryCall.self, plain, options: deadline)
        try expect(uncompressed.payload?.body.count == 314_159, "uncompressed request: wrong response size")
    }

    /// The response's compressed flag must follow `response_compressed` (our client advertises
    /// gzip in grpc-accept-encoding, so the server may compress).
    @Sendable static func serverCompressedUnary(_ client: RPCClient) async throws {
        for compressed in [true, false] {
            var request = simpleRequest(responseSize: 314_159, payloadSize: 271_828)
            request.responseCompressed = boolValue(compressed)
            let response = try await client.unaryWithMetadata(Methods.UnaryCall.self, request, options: deadline)
            try expect(response.message.payload?.body.count == 314_159, "response_compressed=\(compressed): wrong response size")
            try expect(response.messageWasCompressed == compressed,
                       "response_compressed=\(compressed): the response's compressed flag is \(response.messageWasCompressed ? "set" : "clear")")
        }
    }

    @Sendable static func clientCompressedStreaming(_ client: RPCClient) async throws {
        var probe = Testing.StreamingInputCallRequest()
        probe.expectCompressed = boolValue(true)
        probe.payload = payload(size: 27_182)
        try await expectStatus(.invalidArgument) {
            _ = try await client.clientStreaming(Methods.StreamingInputCall.self, options: deadline) { writer in try await writer.write(probe) }
        }
        // Our client compresses every message of a call, so the second message carries no
        // expect_compressed=false (the same approximation grpcio needs).
        let response = try await client.clientStreaming(Methods.StreamingInputCall.self, options: CallOptions(timeout: .seconds(10), compressRequests: true)) { writer in
            try await writer.write(probe)
            var second = Testing.StreamingInputCallRequest()
            second.payload = payload(size: 45_904)
            try await writer.write(second)
        }
        try expect(response.message.aggregatedPayloadSize == 73_086, "aggregated \(response.message.aggregatedPayloadSize), want 73086")
    }

    @Sendable static func serverCompressedStreaming(_ client: RPCClient) async throws {
        var request = streamingRequest([31_415, 92_653])
        request.responseParameters[0].compressed = boolValue(true)
        request.responseParameters[1].compressed = boolValue(false)
        let (sizes, flags) = try await client.serverStreaming(Methods.StreamingOutputCall.self, request, options: deadline) { responses in
            var sizes: [Int] = []
            var flags: [Bool] = []
            for try await response in responses {
                sizes.append(response.payload?.body.count ?? 0)
                flags.append(responses.lastMessageWasCompressed)
            }
            return (sizes, flags)
        }
        try expect(sizes == [31_415, 92_653], "response sizes \(sizes)")
        try expect(flags == [true, false], "compressed flags \(flags), want [true, false]")
    }

    /// Runs the named cases (or all) and returns (passed, failed) with one report line per case.
    public static func run(_ names: [String], client: RPCClient, report: (String) -> Void) async -> (passed: Int, failed: Int) {
        let selected = names == ["all"] ? all : all.filter { names.contains($0.name) }
        var passed = 0
        var failed = 0
        for testCase in selected {
            do {
                try await testCase.run(client)
                report("ok \(testCase.name)")
                passed += 1
            } catch {
                report("FAIL \(testCase.name): \(error)")
                failed += 1
            }
        }
        return (passed, failed)
    }
}
