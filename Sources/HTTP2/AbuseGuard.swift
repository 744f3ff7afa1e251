/// Limits nghttp2 1.52 does not enforce by itself, counted per connection, with the timeouts,
/// keepalive and connection-age policy of a connection. A peer over a limit gets
/// GOAWAY(ENHANCE_YOUR_CALM) and the connection closes; everyone else keeps being served.
public struct HTTP2Limits: Sendable, Hashable {
    /// Rapid reset (CVE-2023-44487), server side. What an attacker gains from resetting streams
    /// is work it did not wait for, beyond the concurrency it was granted. Two bounds:
    /// - the application keeps counting a reset stream's work until it has ended (the RPC server
    ///   runs at most SETTINGS_MAX_CONCURRENT_STREAMS handlers per connection, whether or not
    ///   their streams were reset; further calls wait for a handler to return);
    /// - resets that threw work away (the delegate judges: for gRPC, a call reset before it was
    ///   answered and before its deadline was due) draw from a token bucket of
    ///   `wastedResetBurst` tokens refilled at `wastedResetsPerSecond`; an empty bucket ends the
    ///   connection. A client whose calls expire, or that cancels streams it has had answers on,
    ///   spends nothing, however many calls it makes.
    public var wastedResetBurst = 500
    public var wastedResetsPerSecond = 50
    /// PING frames (not ACKs) per `window`: a flood guard on both ends (see also the keepalive
    /// policy below, which judges the spacing of a client's pings).
    public var maxPingsPerWindow = 50
    /// SETTINGS frames (not ACKs) per `window`.
    public var maxSettingsPerWindow = 50
    public var window: Duration = .seconds(10)
    /// CONTINUATION frames in one header block (the CONTINUATION flood, CVE-2024-27316 class).
    public var maxContinuationFrames = 16
    /// Bytes of one header block (HPACK-encoded, all frames together). Kept below nghttp2's own
    /// 64 KiB decoding limit, so an oversized block meets this answer rather than nghttp2's
    /// COMPRESSION_ERROR. A block under this whose decoded list is over
    /// SETTINGS_MAX_HEADER_LIST_SIZE is only a stream error (`.headerListTooLarge`).
    public var maxHeaderBlockBytes = 32 * 1024
    /// A connection must complete the HTTP/2 preface and SETTINGS within this (slowloris).
    public var handshakeTimeout: Duration = .seconds(10)
    /// A connection without a call (an open stream) for this long is closed with
    /// GOAWAY(NO_ERROR). Only streams count: PINGs and their ACKs do not keep it open.
    public var idleTimeout: Duration = .seconds(300)

    // MARK: Keepalive (gRPC A8 for clients, A9 for servers)

    /// Send a PING after this long without receiving anything; nil turns keepalive off. The
    /// default is a server's (gRPC's two hours); clients use `HTTP2Limits.client`.
    public var keepaliveInterval: Duration? = .seconds(2 * 3600)
    /// Close the connection if a keepalive PING is not answered within this.
    public var keepaliveTimeout: Duration = .seconds(20)
    /// Whether keepalive PINGs go out while no stream is open. gRPC servers (grpc-go, grpc C++)
    /// count such pings as strikes unless told to permit them, so the default is no.
    public var keepaliveWithoutCalls = false

    // MARK: The peer's pings (server side; gRPC A8's enforcement policy)

    /// The shortest spacing of the peer's PINGs accepted while calls are open; nil (the
    /// default) polices only floods (`maxPingsPerWindow`). The RPC server sets gRPC's five
    /// minutes (`HTTP2Limits.grpcServer`); an HTTP front for browsers should not. A PING sooner
    /// than this is a strike; so is any PING within two hours of the previous one while no call
    /// is open, unless `permitPingsWithoutCalls`. Sending the peer HEADERS or DATA clears the
    /// strikes (pings that ride along real traffic, such as gRPC's bandwidth probes, are fine).
    public var minPeerPingInterval: Duration?
    public var permitPingsWithoutCalls = false
    /// Strikes tolerated; one more ends the connection with GOAWAY(ENHANCE_YOUR_CALM) and the
    /// debug data "too_many_pings", which gRPC clients read as "ping less often".
    public var maxPingStrikes = 2

    // MARK: Connection age (server side; gRPC A9)

    /// After this long (plus or minus 10%, so that connections opened together do not all go
    /// at once) the server sends GOAWAY: clients open a new connection for new calls, which
    /// rebalances them across the servers behind one name. nil: connections live on.
    public var maxConnectionAge: Duration?
    /// How long calls in flight may go on after the max-age GOAWAY; then the connection closes.
    /// nil: until they finish.
    public var maxConnectionAgeGrace: Duration?

    public init() {}

    /// A gRPC server's defaults: the enforcement policy of grpc-go and grpc C++ on the client's
    /// pings (five minutes apart at least while calls are open, none without calls, two strikes).
    public static var grpcServer: HTTP2Limits {
        var limits = HTTP2Limits()
        limits.minPeerPingInterval = .seconds(300)
        return limits
    }

    /// A client's defaults: keepalive every five minutes while calls are open, which gRPC
    /// servers' default policy accepts (five minutes apart at least, never without calls); a
    /// dead server is noticed within five minutes and 20 seconds.
    public static var client: HTTP2Limits {
        var limits = HTTP2Limits()
        limits.keepaliveInterval = .seconds(300)
        return limits
    }
}

/// The abuse counters of one connection: a value-type state machine fed with what the peer did.
public struct AbuseGuard: Sendable {
    public enum Verdict: Sendable, Equatable {
        case fine
        /// Over a limit: send GOAWAY(ENHANCE_YOUR_CALM) with this reason and close.
        case enhanceYourCalm(String)
    }

    let limits: HTTP2Limits
    private var pings: [ContinuousClock.Instant] = []
    private var settings: [ContinuousClock.Instant] = []
    private var continuationFrames = 0
    private var headerBlockBytes = 0
    /// Tokens left for resets that wasted work, and when they were last refilled.
    private var resetTokens: Double
    private var resetTokensRefilled: ContinuousClock.Instant?

    public init(limits: HTTP2Limits) {
        self.limits = limits
        self.resetTokens = Double(limits.wastedResetBurst)
    }

    /// Counts `event`, seen at `now`.
    public mutating func record(_ event: HTTP2Session.Event, now: ContinuousClock.Instant) -> Verdict {
        switch event {
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
        default:
            return .fine
        }
    }

    /// Counts a reset by the peer that threw work away (see `HTTP2Limits.wastedResetBurst`).
    public mutating func recordWastedReset(now: ContinuousClock.Instant) -> Verdict {
        if let last = resetTokensRefilled {
            let elapsed = now - last
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            resetTokens = min(Double(limits.wastedResetBurst), resetTokens + seconds * Double(limits.wastedResetsPerSecond))
        }
        resetTokensRefilled = now
        resetTokens -= 1
        if resetTokens < 0 {
            return .enhanceYourCalm("more than \(limits.wastedResetBurst) streams reset before they were answered "
                                    + "(refilled at \(limits.wastedResetsPerSecond) per second)")
        }
        return .fine
    }

    private func count(_ times: inout [ContinuousClock.Instant], now: ContinuousClock.Instant, limit: Int, what: String) -> Verdict {
        times.append(now)
        let start = now - limits.window
        if let firstRecent = times.firstIndex(where: { $0 >= start }), firstRecent > 0 { times.removeFirst(firstRecent) }
        return times.count > limit ? .enhanceYourCalm("more than \(limit) \(what) frames in \(limits.window)") : .fine
    }
}
