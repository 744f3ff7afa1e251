/// A server's policy on its client's PINGs (gRPC A8's enforcement), when
/// `HTTP2Limits.minPeerPingInterval` is set: pings spaced closer than that (or any ping while no call is open, unless permitted) are
/// strikes; past `maxPingStrikes` the client is told GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings").
/// Strikes are forgiven whenever the server has sent HEADERS or DATA since the previous ping.
///
/// A value-type state machine with an injected clock, tested on its own.
public struct PingPolicy: Sendable {
    /// The debug data of the GOAWAY, as gRPC clients recognise it.
    public static let tooManyPings = "too_many_pings"
    /// The spacing demanded while no call is open and such pings are not permitted (gRPC's).
    static let intervalWithoutCalls: Duration = .seconds(2 * 3600)

    let limits: HTTP2Limits
    private var lastPing: ContinuousClock.Instant?
    private(set) var strikes = 0

    public init(limits: HTTP2Limits) {
        self.limits = limits
    }

    /// Judges a PING received at `now`. `hasCalls`: whether a stream is open; `sentStreamFrames`:
    /// whether this end sent HEADERS or DATA since the previous ping.
    public mutating func pingReceived(now: ContinuousClock.Instant, hasCalls: Bool, sentStreamFrames: Bool) -> AbuseGuard.Verdict {
        guard let minPeerPingInterval = limits.minPeerPingInterval else { return .fine }
        defer { lastPing = now }
        if sentStreamFrames {
            strikes = 0
            return .fine
        }
        let minimum = hasCalls || limits.permitPingsWithoutCalls ? minPeerPingInterval : Self.intervalWithoutCalls
        if let lastPing, now - lastPing < minimum { strikes += 1 }
        return strikes > limits.maxPingStrikes ? .enhanceYourCalm(Self.tooManyPings) : .fine
    }
}
