import GRPCProtos
import HTTP2
import InteropTesting
import NIOCore
import NIOPosix
import ProtobufKit
@testable import RPC
import Synchronization
import Testing

/// How the client uses its connections (issue 12, A5): calls a GOAWAY or REFUSED_STREAM turned
/// away go again on another connection, concurrent first calls share one connection attempt,
/// and wait-for-ready waits for a server that is not up yet.
///
/// Deadlines here are bounds, not what is tested (except wait-for-ready's): 60 s, because in the
/// full `make test` the two threads of Swift's cooperative pool are at times held for 20 s by
/// synchronous tests that run processes (a 10 s deadline once expired before its call started).
@Suite("Client connections", .serialized)
struct ClientConnectionTests {
    @Test("GOAWAY: calls above its last stream id go again on a new connection; the call at or below it finishes on the old one")
    func goAwayRetriesUnprocessedCalls() async throws {
        // Connection 0 waits for three complete requests, then says GOAWAY naming only the
        // first as processed, and answers that one. Later connections answer everything.
        let seen = Shared([Int32]())
        let answered = Shared([(connection: Int, stream: Int32)]())
        let peer = try await RawPeer.start { connection, event, session in
            guard case .endStream(let streamID) = event else { return }
            if connection > 0 {
                answered.withLock { $0.append((connection, streamID)) }
                return RawPeer.answerOK(session, streamID: streamID)
            }
            let streams = seen.withLock { seen -> [Int32] in
                seen.append(streamID)
                return seen
            }
            guard streams.count == 3, let first = streams.min() else { return }
            session.sendGoAway(errorCode: 0, lastStreamID: first)
            answered.withLock { $0.append((connection, first)) }
            RawPeer.answerOK(session, streamID: first)
        }
        let client = RPCClient(host: "127.0.0.1", port: peer.port)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                // Not idempotent: only the transparent retry of unprocessed calls may repeat them.
                group.addTask { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(60))) }
            }
            try await group.waitForAll()
        }
        let answers = answered.withLock { $0 }
        #expect(answers.filter { $0.connection == 0 }.count == 1, "\(answers)")
        #expect(answers.filter { $0.connection == 1 }.count == 2, "\(answers)")
        #expect(peer.connectionCount == 2)
        await client.close()
        await peer.close()
    }

    @Test("REFUSED_STREAM: the call goes again once, transparently; a second refusal is the caller's UNAVAILABLE")
    func refusedStreamIsRetriedOnce() async throws {
        // Refuses the first stream it sees, answers the rest.
        let streams = Shared(0)
        let once = try await RawPeer.start { _, event, session in
            guard case .endStream(let streamID) = event else { return }
            if streams.withLock({ count in count += 1; return count }) == 1 {
                session.resetStream(streamID, errorCode: 0x7)
            } else {
                RawPeer.answerOK(session, streamID: streamID)
            }
        }
        let client = RPCClient(host: "127.0.0.1", port: once.port)
        _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(60)))
        #expect(streams.withLock { $0 } == 2)
        await client.close()
        await once.close()

        // Refuses every stream: one retry, then the refusal reaches the caller.
        let refusals = Shared(0)
        let always = try await RawPeer.start { _, event, session in
            guard case .endStream(let streamID) = event else { return }
            refusals.withLock { $0 += 1 }
            session.resetStream(streamID, errorCode: 0x7)
        }
        let refused = RPCClient(host: "127.0.0.1", port: always.port)
        let error = await #expect(throws: RPCError.self) {
            _ = try await refused.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(60)))
        }
        #expect(error?.code == .unavailable, "\(String(describing: error))")
        #expect(refusals.withLock { $0 } == 2)
        await refused.close()
        await always.close()
    }

    @Test("a server-streaming call refused unprocessed goes again once, transparently; refused twice, the reader sees UNAVAILABLE")
    func refusedServerStreamIsRetriedOnce() async throws {
        // Refuses the first stream; answers the second with one message and OK.
        let streams = Shared(0)
        let once = try await RawPeer.start { _, event, session in
            guard case .endStream(let streamID) = event else { return }
            if streams.withLock({ count in count += 1; return count }) == 1 {
                session.resetStream(streamID, errorCode: 0x7)
            } else {
                RawPeer.answerOK(session, streamID: streamID)
            }
        }
        let client = RPCClient(host: "127.0.0.1", port: once.port)
        let received = try await client.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest(),
                                                        options: CallOptions(timeout: .seconds(60))) { responses in
            var count = 0
            for try await _ in responses { count += 1 }
            return count
        }
        #expect(received == 1)
        #expect(streams.withLock { $0 } == 2)
        await client.close()
        await once.close()

        // Refuses every stream: one retry, then the refusal reaches the reader.
        let refusals = Shared(0)
        let always = try await RawPeer.start { _, event, session in
            guard case .endStream(let streamID) = event else { return }
            refusals.withLock { $0 += 1 }
            session.resetStream(streamID, errorCode: 0x7)
        }
        let refused = RPCClient(host: "127.0.0.1", port: always.port)
        let error = await #expect(throws: RPCError.self) {
            _ = try await refused.serverStreaming(Methods.StreamingOutputCall.self, Grpc.Testing.StreamingOutputCallRequest(),
                                                  options: CallOptions(timeout: .seconds(60))) { responses in
                for try await _ in responses {}
            }
        }
        #expect(error?.code == .unavailable, "\(String(describing: error))")
        #expect(refusals.withLock { $0 } == 2)
        await refused.close()
        await always.close()
    }

    /// A request of `size` payload bytes for the client-streaming test method.
    static func inputRequest(_ size: Int) -> Grpc.Testing.StreamingInputCallRequest {
        var request = Grpc.Testing.StreamingInputCallRequest()
        request.payload = Grpc.Testing.Payload()
        request.payload?.body = [UInt8](repeating: 7, count: size)
        return request
    }

    /// A request of `size` payload bytes for the bidirectional test method.
    static func inputRequestAsDuplex(_ size: Int) -> Grpc.Testing.StreamingOutputCallRequest {
        var request = Grpc.Testing.StreamingOutputCallRequest()
        request.payload = Grpc.Testing.Payload()
        request.payload?.body = [UInt8](repeating: 7, count: size)
        return request
    }

    /// A peer that counts the DATA bytes of every stream and refuses the first stream with
    /// REFUSED_STREAM once its requests have ended (or, with `refuseAtHeaders`, as soon as it
    /// opens); later streams are answered with one message and OK when their requests end.
    static func refusingFirstStream(refuseAtHeaders: Bool = false) async throws -> (peer: RawPeer, bytes: Shared<[Int32: Int]>, refused: Shared<[Int32]>) {
        let bytes = Shared([Int32: Int]())
        let refused = Shared([Int32]())
        let peer = try await RawPeer.start { _, event, session in
            func refuseIfFirst(_ streamID: Int32) -> Bool {
                let first = refused.withLock { refused in
                    guard refused.isEmpty else { return false }
                    refused.append(streamID)
                    return true
                }
                if first { session.resetStream(streamID, errorCode: 0x7) }
                return first
            }
            switch event {
            case .headers(let streamID, _, _) where refuseAtHeaders:
                _ = refuseIfFirst(streamID)
            case .data(let streamID, let data):
                bytes.withLock { $0[streamID, default: 0] += data.readableBytes }
            case .endStream(let streamID):
                if refuseAtHeaders && refused.withLock({ $0.contains(streamID) }) { return }
                if !refuseAtHeaders && refuseIfFirst(streamID) { return }
                RawPeer.answerOK(session, streamID: streamID)
            default:
                break
            }
        }
        return (peer, bytes, refused)
    }

    @Test("client-streaming and bidirectional calls refused unprocessed go again once with every message written; past the replay limit the refusal reaches the caller")
    func refusedRequestStreamsAreReplayed() async throws {
        let sizes = [100, 2_000, 30]
        // Each message on the wire: the 5-byte gRPC frame prefix and the encoded message.
        let framedBytes = sizes.reduce(0) { total, size in total + 5 + Self.inputRequest(size).serializedSize }

        // Client streaming, refused when its requests end: the second stream carries all three.
        let clientStreamPeer = try await Self.refusingFirstStream()
        let client = RPCClient(host: "127.0.0.1", port: clientStreamPeer.peer.port)
        _ = try await client.clientStreaming(Methods.StreamingInputCall.self, options: CallOptions(timeout: .seconds(60))) { writer in
            for size in sizes { try await writer.write(Self.inputRequest(size)) }
        }
        let refused = clientStreamPeer.refused.withLock { $0 }
        let bytes = clientStreamPeer.bytes.withLock { $0 }
        #expect(refused.count == 1)
        #expect(bytes.count == 2, "streams that carried requests: \(bytes)")
        for (stream, count) in bytes { #expect(count == framedBytes, "stream \(stream) carried \(count) of \(framedBytes) bytes") }
        await client.close()
        await clientStreamPeer.peer.close()

        // Bidirectional, refused as soon as it opens while the caller writes: the new stream gets
        // what was written before and after the refusal, in order, and the end of the requests.
        let bidiPeer = try await Self.refusingFirstStream(refuseAtHeaders: true)
        let bidiClient = RPCClient(host: "127.0.0.1", port: bidiPeer.peer.port)
        let responses = try await bidiClient.bidirectional(Methods.FullDuplexCall.self, options: CallOptions(timeout: .seconds(60))) { writer, responses in
            for size in sizes { try await writer.write(Self.inputRequestAsDuplex(size)) }
            writer.finish()
            var count = 0
            for try await _ in responses { count += 1 }
            return count
        }
        #expect(responses == 1)
        let bidiBytes = bidiPeer.bytes.withLock { $0 }
        let bidiRefused = bidiPeer.refused.withLock { $0 }
        #expect(bidiRefused.count == 1)
        let duplexBytes = sizes.reduce(0) { total, size in total + Self.inputRequestAsDuplex(size).serializedSize + 5 }
        let replayed = bidiBytes.filter { !bidiRefused.contains($0.key) }
        #expect(replayed.count == 1 && replayed.first?.value == duplexBytes, "bytes per stream: \(bidiBytes), expected \(duplexBytes) on the new one")
        await bidiClient.close()
        await bidiPeer.peer.close()

        // More written than the replay buffer holds: not retried, the caller sees UNAVAILABLE.
        let smallPeer = try await Self.refusingFirstStream()
        let small = RPCClient(host: "127.0.0.1", port: smallPeer.peer.port, options: .defaults { $0.replayBufferLimit = 1_000 })
        let error = await #expect(throws: RPCError.self) {
            _ = try await small.clientStreaming(Methods.StreamingInputCall.self, options: CallOptions(timeout: .seconds(60))) { writer in
                for size in sizes { try await writer.write(Self.inputRequest(size)) }
            }
        }
        #expect(error?.code == .unavailable, "\(String(describing: error))")
        #expect(smallPeer.bytes.withLock { $0.count } == 1)
        await small.close()
        await smallPeer.peer.close()
    }

    @Test("50 concurrent first calls share one connection")
    func concurrentFirstCallsShareOneConnection() async throws {
        let peers = Shared(Set<String>())
        var router = Router()
        router.unary(Methods.EmptyCall.self) { request, context in
            peers.withLock { _ = $0.insert(context.peer) }
            return request
        }
        try await withServer(router) { client, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<50 {
                    group.addTask { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
                }
                try await group.waitForAll()
            }
            let seen = peers.withLock { $0 }
            #expect(seen.count == 1, "the calls came over \(seen.count) connections: \(seen)")
        }
        // Counted where the TCP connections are accepted.
        let peer = try await RawPeer.start { _, event, session in
            if case .endStream(let streamID) = event { RawPeer.answerOK(session, streamID: streamID) }
        }
        let client = RPCClient(host: "127.0.0.1", port: peer.port)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<50 {
                group.addTask { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(60))) }
            }
            try await group.waitForAll()
        }
        #expect(peer.connectionCount == 1)
        await client.close()
        await peer.close()
    }

    @Test("without wait-for-ready an unreachable target fails fast with UNAVAILABLE; with it the call waits until the server is up, or until its deadline")
    func waitForReady() async throws {
        let dead = try await NameResolutionTests.deadAddress()
        let port = dead.port!
        let client = RPCClient(host: "127.0.0.1", port: port)
        let failFast = await #expect(throws: RPCError.self) {
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(30)))
        }
        #expect(failFast?.code == .unavailable)

        let waitingTooLong = await #expect(throws: RPCError.self) {
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .milliseconds(300), waitForReady: true))
        }
        #expect(waitingTooLong?.code == .deadlineExceeded, "\(String(describing: waitingTooLong))")

        // A call that waits; the server comes up on that port after the call has failed to
        // connect at least once more.
        let attemptsBefore = client.pool.withLock { $0.backoff.values.map(\.delay) }
        let waiting = Task {
            try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(30), waitForReady: true))
        }
        for _ in 0..<300 where client.pool.withLock({ $0.backoff.values.map(\.delay) }) == attemptsBefore {
            try await Task.sleep(for: .milliseconds(10))
        }
        let server = RPCServer(router: interopTestServiceRouter(), options: .defaults { $0.port = port })
        try await server.start()
        _ = try await waiting.value
        await client.close()
        await server.shutdown()
    }
}
