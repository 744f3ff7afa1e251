import Foundation
import GRPCProtos
@testable import HTTP2
import InteropTesting
import ProtobufKit
@testable import RPC
import Testing
import TestSupport

/// Keepalive and connection management (gRPC A8 and A9): the server's policy on a client's
/// PINGs, the idle timeout counting calls rather than PINGs, and the max connection age.
/// A client pinging too often is a case of tools/abuse/h2_abuse.py (`too_many_pings`).
@Suite("Keepalive and connection age", .serialized)
struct KeepaliveTests {
    @Test("a connection kept busy only by PINGs is closed at the idle timeout")
    func pingsDoNotKeepAnIdleConnection() async throws {
        let options = RPCServer.Options.defaults {
            $0.limits.idleTimeout = .seconds(1)
            // The client's pings are within policy: only the idle timeout may end the connection.
            $0.limits.permitPingsWithoutCalls = true
            $0.limits.minPeerPingInterval = .milliseconds(100)
        }
        let server = RPCServer(router: interopTestServiceRouter(), options: options)
        let port = try await server.start()
        // Pings every 200 ms for up to 4 s, answering nothing else; prints what ended it.
        let script = """
        import socket, struct, time
        import h2.config, h2.connection, h2.events
        s = socket.create_connection(("127.0.0.1", \(port)))
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        start = time.monotonic()
        outcome = "still open after 4 s"
        s.settimeout(0.05)
        index = 0
        next_ping = start
        while time.monotonic() - start < 4 and outcome.startswith("still"):
            if time.monotonic() >= next_ping:
                c.ping(struct.pack(">Q", index)); index += 1
                # From now, not from the last ping's due time: after this process was held up
                # (a loaded machine), catching up would send pings back to back, strikes that end
                # the connection with too_many_pings instead of the idle timeout.
                next_ping = time.monotonic() + 0.2
                s.sendall(c.data_to_send())
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                outcome = "reset without GOAWAY"
                break
            if not data:
                outcome = "closed without GOAWAY"
                break
            for event in c.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    outcome = f"goaway {event.error_code} {event.additional_data.decode()} after {time.monotonic() - start:.1f} s"
            s.sendall(c.data_to_send())
        print(outcome)
        """
        let output = String(decoding: try await run(projectPython, ["-c", script]), as: UTF8.self)
        #expect(output.hasPrefix("goaway 0 idle"), "\(output)")
        await server.shutdown()
    }

    @Test("the ping policy: strikes for pings too close, forgiven after stream frames")
    func pingPolicy() {
        var limits = HTTP2Limits()
        limits.minPeerPingInterval = .seconds(1)
        limits.maxPingStrikes = 2
        let start = ContinuousClock.now
        var policy = PingPolicy(limits: limits)
        // Pings a second apart with calls open: fine forever.
        for index in 0..<10 {
            #expect(policy.pingReceived(now: start + .seconds(index), hasCalls: true, sentStreamFrames: false) == .fine)
        }
        // Pings 100 ms apart: the third strike ends it.
        var eager = PingPolicy(limits: limits)
        var verdicts: [AbuseGuard.Verdict] = []
        for index in 0..<4 {
            verdicts.append(eager.pingReceived(now: start + .milliseconds(100 * index), hasCalls: true, sentStreamFrames: false))
        }
        #expect(verdicts == [.fine, .fine, .fine, .enhanceYourCalm("too_many_pings")])
        // The same pings beside response traffic (bandwidth probes): fine.
        var probing = PingPolicy(limits: limits)
        for index in 0..<10 {
            #expect(probing.pingReceived(now: start + .milliseconds(100 * index), hasCalls: true, sentStreamFrames: true) == .fine)
        }
        // Without calls, pings a second apart are strikes unless permitted.
        var idle = PingPolicy(limits: limits)
        let idleVerdicts = (0..<4).map { idle.pingReceived(now: start + .seconds($0), hasCalls: false, sentStreamFrames: false) }
        #expect(idleVerdicts.last == .enhanceYourCalm("too_many_pings"))
        limits.permitPingsWithoutCalls = true
        var permitted = PingPolicy(limits: limits)
        #expect((0..<4).allSatisfy { permitted.pingReceived(now: start + .seconds($0), hasCalls: false, sentStreamFrames: false) == .fine })
    }

    @Test("client defaults are what gRPC servers accept: five minutes apart, only with calls")
    func clientDefaults() {
        let limits = RPCClient.Options().limits
        #expect(limits.keepaliveInterval.map { $0 >= .seconds(300) } == true)
        #expect(limits.keepaliveWithoutCalls == false)
    }

    @Test("after GOAWAY too_many_pings the client doubles its keepalive interval for its next connections")
    func tooManyPingsDoublesTheInterval() async throws {
        // gRPC's enforcement, strict: pings less than 10 s apart are strikes, the third strike ends
        // the connection with GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings").
        let options = RPCServer.Options.defaults { $0.limits.minPeerPingInterval = .seconds(10) }
        let server = RPCServer(router: Self.sleepyRouter(), options: options)
        let port = try await server.start()
        let client = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.limits.keepaliveInterval = .milliseconds(50) })
        #expect(client.keepaliveInterval == .milliseconds(50))
        // A silent call keeps the connection "with calls", so the client pings every 50 ms.
        let cutOff = await #expect(throws: RPCError.self) { _ = try await client.unary(Methods.UnaryCall.self, request(responseSize: 5000)) }
        #expect(cutOff?.code == .unavailable)
        #expect(client.keepaliveInterval == .milliseconds(100))

        // The next connection is made with the doubled interval.
        _ = try await client.unary(Methods.UnaryCall.self, request(responseSize: 0))
        let handle = try #require(client.pool.withLock { $0.connections.values.first })
        let channel = handle.channel
        let interval = try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: HTTP2Connection.self).limits.keepaliveInterval
        }.get()
        #expect(interval == .milliseconds(100))
        // Still too often for this server: told again, the client halves its pings again.
        _ = try? await client.unary(Methods.UnaryCall.self, request(responseSize: 5000))
        #expect(client.keepaliveInterval == .milliseconds(200))
        await client.close()
        await server.shutdown()
    }

    /// UnaryCall answers with the caller's address after sleeping `responseSize` milliseconds;
    /// `arrivals`, when given, counts the calls that reached it.
    static func sleepyRouter(arrivals: Shared<Int>? = nil) -> Router {
        var router = Router()
        router.unary(Methods.UnaryCall.self) { request, context in
            arrivals?.withLock { $0 += 1 }
            if request.responseSize > 0 { try await Task.sleep(for: .milliseconds(Int(request.responseSize))) }
            var response = Grpc.Testing.SimpleResponse()
            response.hostname = context.peer
            return response
        }
        return router
    }

    @Test("past its max age a connection gets GOAWAY; calls in flight finish within the grace, new calls go to a new connection")
    func maxConnectionAge() async throws {
        // Windows of seconds, not fractions: the two long calls must reach the first connection
        // before its GOAWAY (at 5.4 to 6.6 s), which a loaded machine could delay past the 1.8 s
        // an age of 2 s left.
        let options = RPCServer.Options.defaults {
            $0.limits.maxConnectionAge = .seconds(6)
            $0.limits.maxConnectionAgeGrace = .seconds(6)
        }
        // Calls that reached a handler, so the test knows the long ones are in flight on the
        // first connection before its age runs out (a loaded machine can start a task late).
        let arrived = Shared(0)
        try await withServer(Self.sleepyRouter(arrivals: arrived), options: options) { client, _ in
            let first = try await client.unary(Methods.UnaryCall.self, request(responseSize: 0)).hostname
            let firstConnection = try #require(client.pool.withLock { $0.connections.values.first })
            // In flight across the GOAWAY, done well within the grace (closed at 11.4 s or later).
            async let inFlight = client.unary(Methods.UnaryCall.self, request(responseSize: 7000))
            // In flight past the grace: cut off.
            async let tooLong = client.unary(Methods.UnaryCall.self, request(responseSize: 30_000))
            while arrived.withLock({ $0 }) < 3 { try await Task.sleep(for: .milliseconds(5)) }
            // Once the client has the GOAWAY (waited for, not slept for: it could come late on a
            // loaded machine), a new call goes to a new connection.
            #expect(try await waitUntil { firstConnection.status.isDraining }, "no GOAWAY reached the client after the max age")
            let second = try await client.unary(Methods.UnaryCall.self, request(responseSize: 0)).hostname
            #expect(second != first, "a call after the max age went to the old connection")
            #expect(try await inFlight.hostname == first)
            do {
                _ = try await tooLong
                Issue.record("a call outlasting the grace period was not cut off")
            } catch let error as RPCError {
                #expect(error.code == .unavailable, "\(error)")
            }
        }
    }
}
