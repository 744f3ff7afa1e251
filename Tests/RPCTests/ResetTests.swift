import GRPCProtos
import HTTP2
import ProtobufKit
import RPC
import Synchronization
import Testing
import TestSupport

/// The rapid-reset guard bounds what resets gain an attacker (the work thrown away, and the
/// concurrency beyond the stream limit) without cutting off a client whose calls expire.
/// The attack itself (1,000 streams opened and reset at once) is a case of
/// tools/abuse/h2_abuse.py, run by AbuseTests.
@Suite("Stream resets", .serialized)
struct ResetTests {
    @Test("2,000 deadline expiries in 10 s on one connection keep the connection, and so do 1,000 resets late in their calls' time; the rapid-reset attack is still cut off")
    func deadlineExpiriesKeepTheConnection() async throws {
        var router = Router()
        router.unary(Methods.UnaryCall.self) { request, context in
            // A slow backend: answers the probe at once, everything else after its deadline.
            if request.responseSize == 1 {
                var response = Grpc.Testing.SimpleResponse()
                response.hostname = context.peer
                return response
            }
            try await Task.sleep(for: .seconds(30))
            return Grpc.Testing.SimpleResponse()
        }
        // For the raw attacker's well-behaved call after its attack (tools/abuse/h2_abuse.py).
        router.unary(Methods.EmptyCall.self) { _, _ in Grpc.Testing.Empty() }
        try await withServer(router) { client, server in
            var probe = Grpc.Testing.SimpleRequest()
            probe.responseSize = 1
            let before = try await client.unary(Methods.UnaryCall.self, probe).hostname
            // 50 callers, 40 calls each, every one expiring after 50 ms: our client resets each
            // stream (RST_STREAM CANCEL) as the server's own deadline ends it.
            let outcomes = try await withThrowingTaskGroup(of: [String: Int].self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        var outcomes: [String: Int] = [:]
                        for _ in 0..<40 {
                            do {
                                _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(),
                                                           options: CallOptions(timeout: .milliseconds(50)))
                                outcomes["OK", default: 0] += 1
                            } catch let error as RPCError {
                                outcomes[error.code == .deadlineExceeded ? "\(error.code)" : "\(error.code): \(error.message)", default: 0] += 1
                            }
                        }
                        return outcomes
                    }
                }
                return try await group.reduce(into: [String: Int]()) { $0.merge($1, uniquingKeysWith: +) }
            }
            // Every call ends with its deadline: none refused, none cut off with its connection.
            #expect(outcomes == ["\(RPCError.Code.deadlineExceeded)": 2000])
            // Still the same connection (a GOAWAY would have made the client open a new one,
            // from another port).
            let after = try await client.unary(Methods.UnaryCall.self, probe).hostname
            #expect(after == before, "the connection was replaced (\(before) then \(after))")

            // Resets that come late in a call's time are deadlines expiring too, even when the
            // request spent long enough reaching the server that its own deadline is still
            // ahead: 1,000 calls reset 120 ms into their 200 ms, twice the budget's burst.
            let port = try #require(server.port)
            let script = repositoryRoot.appendingPathComponent("tools/abuse/h2_abuse.py").path
            let late: String
            do {
                late = String(decoding: try await run(projectPython, [script, "--port", String(port), "--case", "late_resets"]), as: UTF8.self)
            } catch let failure as CommandFailure {
                late = failure.output + failure.errorOutput
            }
            #expect(late.contains("ok late_resets") && late.contains("1 passed, 0 failed"), "\(late)")

            // The attack on the same server: 1,000 streams opened and reset at once, none of them
            // answered or due, is answered with GOAWAY(ENHANCE_YOUR_CALM) (the script checks the
            // code, then that a well-behaved call on a new connection is served).
            let output: String
            do {
                output = String(decoding: try await run(projectPython, [script, "--port", String(port), "--case", "rapid_reset"]), as: UTF8.self)
            } catch let failure as CommandFailure {
                output = failure.output + failure.errorOutput
            }
            #expect(output.contains("1 passed, 0 failed"), "\(output)")
            // And our client's connection was not the one cut off.
            let afterAttack = try await client.unary(Methods.UnaryCall.self, probe).hostname
            #expect(afterAttack == before, "the connection was replaced (\(before) then \(afterAttack))")
        }
    }

    @Test("a reset stream's handler counts against the stream limit until it returns; later calls wait for it")
    func resetStreamsKeepTheirHandlerSlot() async throws {
        let running = Shared(0)
        let mostRunning = Shared(0)
        let release = Shared(false)
        var router = Router()
        router.unary(Methods.UnaryCall.self) { _, _ in
            let now = running.withLock { $0 += 1; return $0 }
            mostRunning.withLock { $0 = max($0, now) }
            defer { running.withLock { $0 -= 1 } }
            // A handler that does not stop when cancelled (a slow backend call, say): it waits in
            // a task of its own, which the handler's cancellation does not reach (a cancelled
            // task's sleeps return at once, and polling in it would spin the event loop).
            await Task.detached { while !release.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) } }.value
            return Grpc.Testing.SimpleResponse()
        }
        let options = RPCServer.Options.defaults { $0.http2.maxConcurrentStreams = 5 }
        try await withServer(router, options: options) { client, _ in
            // One connection first: five first calls at once could each open their own.
            release.withLock { $0 = true }
            _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest())
            release.withLock { $0 = false }
            mostRunning.withLock { $0 = 0 }
            // Five calls fill the limit, then each is cancelled by its caller (RST_STREAM).
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<5 {
                    group.addTask { _ = try? await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest()) }
                }
                let limit = ContinuousClock.now + .seconds(10)
                while running.withLock({ $0 }) < 5 && ContinuousClock.now < limit { try? await Task.sleep(for: .milliseconds(5)) }
                group.cancelAll()
            }
            // Five more while the first five handlers still run: none of them may start. They
            // wait, and expire (their deadline is 1 s), without the connection being refused.
            let codes = await withTaskGroup(of: RPCError.Code?.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        do {
                            _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(timeout: .seconds(1)))
                            return .ok
                        } catch let error as RPCError {
                            return error.code
                        } catch {
                            return nil
                        }
                    }
                }
                return await group.reduce(into: [RPCError.Code?]()) { $0.append($1) }
            }
            #expect(running.withLock { $0 } == 5, "the first five handlers did not all start")
            #expect(codes == Array(repeating: .deadlineExceeded, count: 5))
            #expect(mostRunning.withLock { $0 } == 5)
            release.withLock { $0 = true }
            // The first five return; calls start again, on the same connection. The deadline is a
            // bound against a hang (a loaded machine can hold a call back for seconds).
            for _ in 0..<10 {
                _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(timeout: .seconds(60)))
            }
        }
    }

    @Test("the reset budget: a burst, then the refill rate")
    func resetBudget() {
        var limits = HTTP2Limits()
        limits.wastedResetBurst = 10
        limits.wastedResetsPerSecond = 100
        var guardState = AbuseGuard(limits: limits)
        let start = ContinuousClock.now
        for index in 0..<10 { #expect(guardState.recordWastedReset(now: start + .microseconds(index)) == .fine) }
        #expect(guardState.recordWastedReset(now: start + .microseconds(10)) != .fine)
        // At 100 per second, one every 10 ms is sustainable forever.
        var steady = AbuseGuard(limits: limits)
        for index in 0..<1000 { #expect(steady.recordWastedReset(now: start + .milliseconds(10 * index)) == .fine) }
    }
}
