/// Exponential backoff with full jitter: after attempt n, wait a random time between zero and
/// `min(maximum, initial × 2^(n-1))`. Jitter spreads out callers that failed together, so they
/// do not come back together. One definition for the services' retry loops (saga steps,
/// compensations).
public struct JitteredBackoff: Sendable, Hashable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The wait after the `attempt`-th failed attempt (1 for the first).
    public func delay(afterAttempt attempt: Int) -> Duration {
        let ceiling = min(maximum, initial * Int(1 << min(max(attempt, 1) - 1, 20)))
        let milliseconds = ceiling.components.seconds * 1000 + ceiling.components.attoseconds / 1_000_000_000_000_000
        return .milliseconds(Int64.random(in: 0...max(1, milliseconds)))
    }
}
