import GRPCProtos
import InteropTesting
import ProtobufKit
@testable import RPC
import Synchronization
import Testing
import TestSupport

/// A value shared between tasks (Mutex itself cannot be captured by escaping closures).
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<Result>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }
}

@Suite("Client resilience", .serialized)
struct ResilienceTests {
    /// A UnaryCall that fails with UNAVAILABLE `failures` times, then succeeds.
    static func flakyRouter(failures: Int, attempts: Shared<Int>) -> Router {
        var router = Router()
        router.unary(Methods.UnaryCall.self) { _, _ in
            let attempt = attempts.withLock { value -> Int in
                value += 1
                return value
            }
            if attempt <= failures { throw RPCError(.unavailable, "try again") }
            return Grpc.Testing.SimpleResponse()
        }
        return router
    }

    @Test("idempotent calls are retried on retryable codes; others are not")
    func retries() async throws {
        let attempts = Shared(0)
        let server = RPCServer(router: Self.flakyRouter(failures: 2, attempts: attempts))
        let port = try await server.start()
        var policy = RetryPolicy()
        policy.initialBackoff = .milliseconds(5)
        let client = RPCClient(host: "127.0.0.1", port: port, options: .defaults { $0.interceptors = [RetryInterceptor(policy: policy)] })
        attempts.withLock { $0 = 0 }
        _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(isIdempotent: true))
        #expect(attempts.withLock { $0 } == 3)
        attempts.withLock { $0 = 0 }
        await #expect(throws: RPCError.self) {
            _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest())  // not marked idempotent
        }
        #expect(attempts.withLock { $0 } == 1)
        await client.close()
        await server.shutdown()
    }

    /// Counts the attempts that reach it (placed inside a retrying interceptor).
    struct CountingInterceptor: ClientInterceptor {
        let attempts: Shared<Int>
        func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
            attempts.withLock { $0 += 1 }
            try await next(options)
        }
    }

    @Test("errors the client made itself are marked local and never retried")
    func localErrorsAreNotRetried() async throws {
        let attempts = Shared(0)
        let server = RPCServer(router: Self.flakyRouter(failures: 0, attempts: attempts))
        let port = try await server.start()
        let tries = Shared(0)
        let client = RPCClient(host: "127.0.0.1", port: port, options: .defaults {
            $0.maxMessageSize = 100
            $0.interceptors = [RetryInterceptor(), CountingInterceptor(attempts: tries)]
        })
        // A request over the client's own size limit: RESOURCE_EXHAUSTED, a retryable code,
        // but it would be refused the same way every time.
        var big = Grpc.Testing.SimpleRequest()
        big.payload = Grpc.Testing.Payload()
        big.payload?.body = [UInt8](repeating: 7, count: 500)
        let tooLarge = await #expect(throws: RPCError.self) {
            _ = try await client.unary(Methods.UnaryCall.self, big, options: CallOptions(isIdempotent: true))
        }
        #expect(tooLarge?.code == .resourceExhausted)
        #expect(tooLarge?.isLocal == true)
        #expect(tries.withLock { $0 } == 1)
        // Metadata that cannot be sent.
        var metadata = Metadata()
        metadata.add("x-note", "two\nlines")
        let unsendable = await #expect(throws: RPCError.self) {
            _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(metadata: metadata, isIdempotent: true))
        }
        #expect(unsendable?.isLocal == true)
        #expect(tries.withLock { $0 } == 2)
        #expect(attempts.withLock { $0 } == 0, "nothing reached the server")
        // A server's UNAVAILABLE is not local.
        let remote = RPCError(.unavailable, "from the server")
        #expect(!remote.isLocal)
        await client.close()
        await server.shutdown()
    }

    @Test("retries stay within the call's deadline: each attempt gets the time left, and no retry starts past it")
    func retriesWithinDeadline() async throws {
        // Fails every attempt with UNAVAILABLE after 100 ms, recording when it arrived and the
        // time it was given (its deadline less its arrival: at most the grpc-timeout sent).
        // The call has 3 s: room for several attempts even on a loaded machine (a full run once
        // got only one attempt into a 1 s deadline), not for all 100.
        let attempts = Shared([(arrived: ContinuousClock.Instant, given: Duration)]())
        var router = Router()
        router.unary(Methods.UnaryCall.self) { _, context in
            let arrived = ContinuousClock.now
            if let deadline = context.deadline { attempts.withLock { $0.append((arrived, deadline - arrived)) } }
            try await Task.sleep(for: .milliseconds(100))
            throw RPCError(.unavailable, "try again")
        }
        var policy = RetryPolicy()
        policy.maxAttempts = 100
        policy.initialBackoff = .milliseconds(10)
        policy.maxBackoff = .milliseconds(10)
        policy.throttling = nil
        try await withServer(router) { _, server in
            let client = RPCClient(host: "127.0.0.1", port: server.port!, options: .defaults { $0.interceptors = [RetryInterceptor(policy: policy)] })
            let error = await #expect(throws: RPCError.self) {
                _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(timeout: .seconds(3), isIdempotent: true))
            }
            #expect(error?.code == .unavailable || error?.code == .deadlineExceeded, "\(String(describing: error))")
            let seen = attempts.withLock { $0 }
            #expect(seen.count >= 2 && seen.count < 100, "\(seen.count) attempts")
            // The deadlines the server computed are not compared with each other: each is its
            // arrival plus the time sent, so it moves with that attempt's trip to the server, and
            // one trip 50 ms slower than the first (common on a loaded machine) failed that check.
            // Bounds that hold however slow the trips are instead: the call's deadline is at most
            // 3 s after the first attempt arrived, and attempt k was sent only after attempt k-1
            // had failed, at least 100 ms after it arrived. So attempt k may be given at most
            // (first arrival + 3 s) - (arrival of k-1 + 100 ms); a retry given a fresh 3 s
            // exceeds that by 100 ms or more. grpc-timeout is rounded up to the microsecond: 1 ms
            // of slack.
            if let first = seen.first {
                #expect(first.given <= .seconds(3) + .milliseconds(1), "the first attempt was given \(first.given)")
                for k in seen.indices.dropFirst() {
                    let most = (first.arrived + .seconds(3)) - (seen[k - 1].arrived + .milliseconds(100)) + .milliseconds(1)
                    #expect(seen[k].given <= most, "attempt \(k + 1) was given \(seen[k].given), past the call's deadline (at most \(most))")
                }
            }
            await client.close()
        }
    }

    @Test("retry throttling (gRPC A6): the token bucket, on its own")
    func tokenBucket() {
        var bucket = RetryTokenBucket(RetryThrottling(maxTokens: 10, tokenRatio: 0.5))
        #expect(bucket.allowsRetry)
        for _ in 0..<4 { bucket.recordFailure() }
        #expect(bucket.tokens == 6)
        #expect(bucket.allowsRetry)
        bucket.recordFailure()
        #expect(bucket.tokens == 5)
        #expect(!bucket.allowsRetry, "retries need more than half the tokens")
        bucket.recordSuccess()
        #expect(bucket.allowsRetry)
        for _ in 0..<100 { bucket.recordFailure() }
        #expect(bucket.tokens == 0)
        for _ in 0..<100 { bucket.recordSuccess() }
        #expect(bucket.tokens == 10)
    }

    @Test("retry throttling: while most calls fail, calls are tried once; successes bring retries back")
    func throttling() async throws {
        let attempts = Shared(0)
        let failing = Shared(true)
        var router = Router()
        router.unary(Methods.UnaryCall.self) { _, _ in
            attempts.withLock { $0 += 1 }
            if failing.withLock({ $0 }) { throw RPCError(.unavailable, "overloaded") }
            return Grpc.Testing.SimpleResponse()
        }
        var policy = RetryPolicy()
        policy.maxAttempts = 5
        policy.initialBackoff = .milliseconds(1)
        policy.maxBackoff = .milliseconds(1)
        policy.throttling = RetryThrottling(maxTokens: 4, tokenRatio: 1)
        let retry = RetryInterceptor(policy: policy)
        try await withServer(router) { _, server in
            let client = RPCClient(host: "127.0.0.1", port: server.port!, options: .defaults { $0.interceptors = [retry] })
            func attemptsOfOneCall() async -> Int {
                let before = attempts.withLock { $0 }
                _ = try? await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(isIdempotent: true))
                return attempts.withLock { $0 } - before
            }
            // 4 tokens: the first failure leaves 3 (> 2: retry), the second 2 (no more retries).
            #expect(await attemptsOfOneCall() == 2)
            #expect(await attemptsOfOneCall() == 1)
            #expect(await attemptsOfOneCall() == 1)
            // The server recovers: each success gives a token back, and retries resume.
            failing.withLock { $0 = false }
            for _ in 0..<4 { #expect(await attemptsOfOneCall() == 1) }
            #expect(retry.throttlingTokens == 4)
            failing.withLock { $0 = true }
            #expect(await attemptsOfOneCall() == 2)
            await client.close()
        }
    }

    @Test("the server's grpc-retry-pushback-ms (A6): a delay replaces the backoff; a negative value stops retries")
    func pushback() async throws {
        // Each attempt fails with UNAVAILABLE and the trailer the test sets; the server records
        // when each attempt arrived.
        let arrivals = Shared([ContinuousClock.Instant]())
        let pushback = Shared("")
        var router = Router()
        router.unary(Methods.UnaryCall.self) { _, _ in
            arrivals.withLock { $0.append(.now) }
            var trailers = Metadata()
            trailers.add("grpc-retry-pushback-ms", pushback.withLock { $0 })
            throw RPCError(.unavailable, "busy", metadata: trailers)
        }
        var policy = RetryPolicy()
        policy.maxAttempts = 2
        policy.initialBackoff = .milliseconds(1)
        policy.maxBackoff = .milliseconds(1)
        policy.throttling = nil
        try await withServer(router) { _, server in
            let client = RPCClient(host: "127.0.0.1", port: server.port!, options: .defaults { $0.interceptors = [RetryInterceptor(policy: policy)] })
            func call(pushback value: String) async -> (error: RPCError?, arrivals: [ContinuousClock.Instant]) {
                arrivals.withLock { $0 = [] }
                pushback.withLock { $0 = value }
                let error = await #expect(throws: RPCError.self) {
                    _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest(), options: CallOptions(isIdempotent: true))
                }
                return (error, arrivals.withLock { $0 })
            }
            // A delay: the retry waits at least the pushback (a lower bound: a sleep is never
            // shorter), where the policy's own backoff is at most 1 ms.
            let delayed = await call(pushback: "400")
            #expect(delayed.error?.code == .unavailable)
            #expect(delayed.arrivals.count == 2, "\(delayed.arrivals.count) attempts")
            if delayed.arrivals.count == 2 {
                #expect(delayed.arrivals[1] - delayed.arrivals[0] >= .milliseconds(400), "retried after \(delayed.arrivals[1] - delayed.arrivals[0])")
            }
            // A negative value (or anything but a number): the server asks not to retry.
            for value in ["-1", "soon"] {
                let stopped = await call(pushback: value)
                #expect(stopped.error?.code == .unavailable)
                #expect(stopped.arrivals.count == 1, "pushback \(value): \(stopped.arrivals.count) attempts")
            }
            await client.close()
        }
    }

    @Test("retry backoff grows, is capped, and is jittered")
    func backoff() {
        var policy = RetryPolicy()
        policy.initialBackoff = .milliseconds(100)
        policy.maxBackoff = .milliseconds(300)
        let samples = (0..<200).map { _ in policy.backoff(beforeRetry: 5) }
        #expect(samples.allSatisfy { $0 >= .zero && $0 <= .milliseconds(300) })
        #expect(Set(samples).count > 20)
    }

    @Test("the circuit breaker opens after consecutive failures, fails fast, and closes after a good trial")
    func circuitBreaker() async throws {
        // Two breakers: one stays open for a minute, so the call after the third failure surely
        // comes while it is open (with 100 ms open, a loaded machine once let the breaker go
        // half-open before that call, which then ran); the other is open 100 ms, for the trial
        // after it, where the timing only sets lower bounds (a sleep is never shorter).
        var configuration = CircuitBreaker.Configuration()
        configuration.failureThreshold = 3
        configuration.openDuration = .seconds(60)
        let breaker = CircuitBreaker(name: "package", configuration: configuration)
        configuration.openDuration = .milliseconds(100)
        let brief = CircuitBreaker(name: "package", configuration: configuration)
        for _ in 0..<3 {
            await #expect(throws: RPCError.self) { try await breaker.run { throw RPCError(.unavailable) } }
            await #expect(throws: RPCError.self) { try await brief.run { throw RPCError(.unavailable) } }
        }
        let calls = Shared(0)
        let fastFail = await #expect(throws: RPCError.self) { try await breaker.run { calls.withLock { $0 += 1 } } }
        #expect(fastFail?.message.contains("circuit breaker package is open") == true)
        #expect(fastFail?.code == .unavailable)
        // The refusal says what it is (ErrorInfo CIRCUIT_OPEN) and how long the circuit rests
        // (RetryInfo): most of the minute is left. A downstream's own UNAVAILABLE is no refusal.
        let delay = try #require(fastFail.flatMap(CircuitBreaker.refusalDelay))
        #expect(delay > .seconds(50) && delay <= .seconds(60))
        #expect(try fastFail?.detail(Google.Rpc.ErrorInfo.self)?.metadata["breaker"] == "package")
        #expect(CircuitBreaker.refusalDelay(RPCError(.unavailable, "circuit breaker package is open")) == nil)
        #expect(calls.withLock { $0 } == 0)
        try await Task.sleep(for: .milliseconds(150))
        try await brief.run { calls.withLock { $0 += 1 } }
        #expect(calls.withLock { $0 } == 1, "the trial ran")
        #expect(brief.currentState == .closed)
        // A caller's own mistake does not count against the downstream.
        for _ in 0..<5 {
            await #expect(throws: RPCError.self) { try await brief.run { throw RPCError(.invalidArgument) } }
        }
        #expect(brief.currentState == .closed)
    }

    @Test("the bulkhead bounds concurrency and refuses beyond its queue")
    func bulkhead() async throws {
        let bulkhead = Bulkhead(name: "drone-scheduler", maxConcurrent: 2, maxQueued: 1)
        let peak = Shared(0)
        // The running calls hold their slots until the test lets them go, not for a fixed 100 ms:
        // on a loaded machine the last calls could come after the first had finished, and find room.
        let released = Shared(false)
        let refused = Shared(0)
        let (results, fullBeforeRelease) = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    do {
                        try await bulkhead.run {
                            peak.withLock { $0 = max($0, bulkhead.running) }
                            // Bounded, so that a bulkhead that never refuses ends the test.
                            let limit = ContinuousClock.now + .seconds(30)
                            while !released.withLock({ $0 }) && ContinuousClock.now < limit { try await Task.sleep(for: .milliseconds(10)) }
                        }
                        return true
                    } catch {
                        refused.withLock { $0 += 1 }
                        return false
                    }
                }
            }
            // Two running and one queued: the fourth is refused while the first two still run.
            let full = try await waitUntil { refused.withLock { $0 } == 1 && bulkhead.running == 2 }
            released.withLock { $0 = true }
            var results: [Bool] = []
            for try await result in group { results.append(result) }
            return (results, full)
        }
        #expect(fullBeforeRelease, "no call was refused while two ran (\(refused.withLock { $0 }) refused)")
        #expect(results.filter { $0 }.count == 3)
        #expect(peak.withLock { $0 } <= 2)
        #expect(bulkhead.running == 0)
    }

    @Test("calls spread round-robin over endpoints and avoid one that is down")
    func roundRobin() async throws {
        let counts = Shared([0, 0])
        var servers: [RPCServer] = []
        var ports: [Int] = []
        for index in 0..<2 {
            var router = Router()
            router.unary(Methods.EmptyCall.self) { request, _ in
                counts.withLock { $0[index] += 1 }
                return request
            }
            let server = RPCServer(router: router)
            ports.append(try await server.start())
            servers.append(server)
        }
        let client = try RPCClient(endpoints: [("127.0.0.1", ports[0]), ("127.0.0.1", ports[1]), ("127.0.0.1", 1)])
        for _ in 0..<12 { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
        let seen = counts.withLock { $0 }
        #expect(seen[0] >= 4 && seen[1] >= 4, "\(seen)")
        #expect(seen[0] + seen[1] == 12)
        await client.close()
        for server in servers { await server.shutdown() }
    }
}
