import GRPCProtos
import InteropTesting
import ProtobufKit
import RPC
import Synchronization
import Testing

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
        var configuration = CircuitBreaker.Configuration()
        configuration.failureThreshold = 3
        configuration.openDuration = .milliseconds(100)
        let breaker = CircuitBreaker(name: "package", configuration: configuration)
        for _ in 0..<3 {
            await #expect(throws: RPCError.self) { try await breaker.run { throw RPCError(.unavailable) } }
        }
        let calls = Shared(0)
        let fastFail = await #expect(throws: RPCError.self) { try await breaker.run { calls.withLock { $0 += 1 } } }
        #expect(fastFail?.message.contains("circuit breaker package is open") == true)
        #expect(calls.withLock { $0 } == 0)
        try await Task.sleep(for: .milliseconds(150))
        try await breaker.run { calls.withLock { $0 += 1 } }
        #expect(breaker.currentState == .closed)
        // A caller's own mistake does not count against the downstream.
        for _ in 0..<5 {
            await #expect(throws: RPCError.self) { try await breaker.run { throw RPCError(.invalidArgument) } }
        }
        #expect(breaker.currentState == .closed)
    }

    @Test("the bulkhead bounds concurrency and refuses beyond its queue")
    func bulkhead() async throws {
        let bulkhead = Bulkhead(name: "drone-scheduler", maxConcurrent: 2, maxQueued: 1)
        let peak = Shared(0)
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    do {
                        try await bulkhead.run {
                            peak.withLock { $0 = max($0, bulkhead.running) }
                            try await Task.sleep(for: .milliseconds(100))
                        }
                        return true
                    } catch {
                        return false
                    }
                }
            }
            var results: [Bool] = []
            for await result in group { results.append(result) }
            return results
        }
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
