/// Limits nghttp2 1.52 does not enforce by itself, counted per connection. A peer over a limit
/// gets GOAWAY(ENHANCE_YOUR_CALM) and the connection closes; everyone else keeps being served.
public struct HTTP2Limits: Sendable, Hashable {
    /// RST_STREAM frames from the peer per `window` (the rapid-reset attack, CVE-2023-44487).
    public var maxResetsPerWindow = 200
    /// PING frames (not ACKs) per `window`.
    public var maxPingsPerWindow = 50
    /// SETTINGS frames (not ACKs) per `window`.
    public var maxSettingsPerWindow = 50
    public var window: Duration = .seconds(10)
    /// CONTINUATION frames in one header block (the CONTINUATION flood, CVE-2024-27316 class).
    public var maxContinuationFrames = 16
    /// Bytes of one header block (HPACK-encoded, all frames together). Kept below nghttp2's own
    /// 64 KiB decoding limit, so an oversized block meets this answer rather than nghttp2's
    /// COMPRESSION_ERROR.
    public var maxHeaderBlockBytes = 32 * 1024
    /// A connection must complete the HTTP/2 preface and SETTINGS within this (slowloris).
    public var handshakeTimeout: Duration = .seconds(10)
    /// A connection with no open stream for this long is closed with GOAWAY(NO_ERROR).
    public var idleTimeout: Duration = .seconds(300)
    /// Send a PING after this long without traffic; nil turns keepalive off.
    public var keepaliveInterval: Duration? = .seconds(60)
    /// Close the connection if a keepalive PING is not answered within this.
    public var keepaliveTimeout: Duration = .seconds(20)

    public init() {}
}

/// The abuse counters of one connection: a value-type state machine fed with what the peer did.
public struct AbuseGuard: Sendable {
    public enum Verdict: Sendable, Equatable {
        case fine
        /// Over a limit: send GOAWAY(ENHANCE_YOUR_CALM) with this reason and close.
        case enhanceYourCalm(String)
    }

    let limits: HTTP2Limits
    private var resets: [ContinuousClock.Instant] = []
    private var pings: [ContinuousClock.Instant] = []
    private var settings: [ContinuousClock.Instant] = []
    private var continuationFrames = 0
    private var headerBlockBytes = 0

    public init(limits: HTTP2Limits) {
        self.limits = limits
    }

    /// Counts `event`, seen at `now`.
    public mutating func record(_ event: HTTP2Session.Event, now: ContinuousClock.Instant) -> Verdict {
        switch event {
        case .resetByPeer:
            return count(&resets, now: now, limit: limits.maxResetsPerWindow, what: "RST_STREAM")
        case .ping:
            return count(&pings, now: now, limit: limits.maxPingsPerWindow, what: "PING")
        case .settings:
            return count(&settings, now: now, limit: limits.maxSettingsPerWindow, what: "SETTINGS")
        case .headerFrame(_, let length, let isContinuation):
            if isContinuation {
                continuationFrames += 1
            } else {
                continuationFrames = 0
                headerBlockBytes = 0
            }
            headerBlockBytes += length
            if continuationFrames > limits.maxContinuationFrames {
                return .enhanceYourCalm("more than \(limits.maxContinuationFrames) CONTINUATION frames in one header block")
            }
            if headerBlockBytes > limits.maxHeaderBlockBytes {
                return .enhanceYourCalm("a header block over \(limits.maxHeaderBlockBytes) bytes")
            }
            return .fine
        case .headerListTooLarge:
            return .enhanceYourCalm("a header list over the advertised SETTINGS_MAX_HEADER_LIST_SIZE")
        default:
            return .fine
        }
    }

    private func count(_ times: inout [ContinuousClock.Instant], now: ContinuousClock.Instant, limit: Int, what: String) -> Verdict {
        times.append(now)
        let start = now - limits.window
        if let firstRecent = times.firstIndex(where: { $0 >= start }), firstRecent > 0 { times.removeFirst(firstRecent) }
        return times.count > limit ? .enhanceYourCalm("more than \(limit) \(what) frames in \(limits.window)") : .fine
    }
}
