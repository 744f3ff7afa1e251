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

    /// `ErrorInfo.domain` and `reason` of a refusal by an open circuit (`refusalDelay(_:)`).
    public static let refusalDomain = "fabrikam.rpc"
    public static let refusalReason = "CIRCUIT_OPEN"

    /// The error a call refused by an open (or half-open, trial in flight) circuit fails with:
    /// UNAVAILABLE, with google.rpc `ErrorInfo` (reason `CIRCUIT_OPEN`, the breaker's name) and
    /// `RetryInfo` (how long the circuit stays open), so a caller can tell "never sent, the
    /// downstream is resting" from a failed call, and wait rather than spend an attempt on it.
    func refusal(now: ContinuousClock.Instant = .now) -> RPCError {
        var error = RPCError(.unavailable, "circuit breaker \(name) is open")
        error.origin = .local
        let remaining: Duration = state.withLock { value in
            if case .open(let until) = value.state, until > now { return until - now }
            return .zero
        }
        var info = Google.Rpc.ErrorInfo()
        info.reason = Self.refusalReason
        info.domain = Self.refusalDomain
        info.metadata = ["breaker": name]
        var retry = Google.Rpc.RetryInfo()
        let (seconds, attoseconds) = remaining.components
        retry.retryDelay = Google.Protobuf.Duration(seconds: seconds, nanos: Int32(attoseconds / 1_000_000_000))
        // Both are small messages of our own: encoding cannot fail.
        try? error.addDetail(info)
        try? error.addDetail(retry)
        return error
    }

    /// When `error` is a refusal by an open circuit (the call was never made): how long the
    /// circuit said it would stay open (zero when half-open with its trial in flight); nil for
    /// any other error.
    public static func refusalDelay(_ error: RPCError) -> Duration? {
        guard error.code == .unavailable,
              let info = try? error.detail(Google.Rpc.ErrorInfo.self),
              info.reason == refusalReason, info.domain == refusalDomain else { return nil }
        guard let delay = (try? error.detail(Google.Rpc.RetryInfo.self))?.retryDelay else { return .zero }
        return .seconds(delay.seconds) + .nanoseconds(Int64(delay.nanos))
    }

    /// Runs `body` if the circuit admits it, recording the outcome.
    public func run<Result>(_ body: () async throws -> Result) async throws -> Result {
        guard admit() else { throw refusal() }
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
