import ProtobufKit
import Synchronization

/// A circuit breaker for one downstream: after `failureThreshold` consecutive transient failures
/// it opens and calls fail at once with UNAVAILABLE; after `openDuration` one trial call is let
/// through (half-open), and its outcome closes or reopens the circuit.
public final class CircuitBreaker: Sendable {
    public enum State: Sendable, Equatable { case closed, open(until: ContinuousClock.Instant), halfOpen }

    public struct Configuration: Sendable {
        public var failureThreshold = 5
        public var openDuration: Duration = .seconds(5)
        /// Failures that count against the downstream (not a caller's own mistakes).
        public var countedCodes: Set<RPCError.Code> = [.unavailable, .deadlineExceeded, .internal, .unknown, .resourceExhausted]
        public init() {}
    }

    public let name: String
    let configuration: Configuration
    private let state = Mutex<(state: State, failures: Int, trialInFlight: Bool)>((.closed, 0, false))

    public init(name: String, configuration: Configuration = Configuration()) {
        self.name = name
        self.configuration = configuration
    }

    public var currentState: State { state.withLock { $0.state } }

    /// Whether a call may go ahead now; a half-open circuit admits one trial at a time.
    func admit(now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { value in
            switch value.state {
            case .closed:
                return true
            case .open(let until):
                guard now >= until else { return false }
                value.state = .halfOpen
                value.trialInFlight = true
                return true
            case .halfOpen:
                if value.trialInFlight { return false }
                value.trialInFlight = true
                return true
            }
        }
    }

    func record(success: Bool, now: ContinuousClock.Instant = .now) {
        state.withLock { value in
            value.trialInFlight = false
            if success {
                value.state = .closed
                value.failures = 0
                return
            }
            value.failures += 1
            if value.state == .halfOpen || value.failures >= configuration.failureThreshold {
                value.state = .open(until: now + configuration.openDuration)
            }
        }
    }

    /// Runs `body` if the circuit admits it, recording the outcome.
    public func run<Result>(_ body: () async throws -> Result) async throws -> Result {
        guard admit() else { throw RPCError(.unavailable, "circuit breaker \(name) is open") }
        do {
            let result = try await body()
            record(success: true)
            return result
        } catch let error as RPCError where configuration.countedCodes.contains(error.code) {
            record(success: false)
            throw error
        } catch {
            record(success: true)  // the downstream answered; the call itself was refused or failed on our side
            throw error
        }
    }
}

/// Puts every call of a client behind a circuit breaker.
public struct CircuitBreakerInterceptor: ClientInterceptor {
    public let breaker: CircuitBreaker
    public init(_ breaker: CircuitBreaker) { self.breaker = breaker }

    public func intercept(_ method: MethodDescriptor, options: CallOptions, next: (CallOptions) async throws -> Void) async throws {
        try await breaker.run { try await next(options) }
    }
}
