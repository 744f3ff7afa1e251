import HTTP2
import Synchronization

/// How many times this process's sends had to wait because the peer's HTTP/2 flow-control window
/// (a stream's or the connection's) was exhausted: one count per wait, on the server side (a
/// response behind its client's window) or the client side (a request behind its server's).
///
/// A rising count says peers read slower than this process writes; whether the stream or the
/// connection window stopped it says whether one reader or the whole peer is behind. The metrics
/// endpoint reads the process's counters on each scrape as
/// `grpc_<side>_flow_control_stalls_total{window="stream"|"connection"}`; counting is two atomic
/// increments, and nothing at all on a call that never waits.
///
/// ```swift
/// let stalls = FlowControlStalls(side: .server)          // a server's own, for a test
/// let server = RPCServer(router: router, options: .defaults { $0.flowControlStalls = stalls })
/// ```
public final class FlowControlStalls: Sendable {
    /// Which end's sends these count.
    public let side: RPCMetrics.Side
    private let streamWindow = Atomic<Int>(0)
    private let connectionWindow = Atomic<Int>(0)

    /// The process's server-side counter: every `RPCServer` counts into it unless given another.
    public static let server = FlowControlStalls(side: .server)
    /// The process's client-side counter: every `RPCClient` counts into it unless given another.
    public static let client = FlowControlStalls(side: .client)

    public init(side: RPCMetrics.Side) { self.side = side }

    /// Waits that the stream's own window caused.
    public var stream: Int { streamWindow.load(ordering: .relaxed) }
    /// Waits that the connection's window caused.
    public var connection: Int { connectionWindow.load(ordering: .relaxed) }

    /// The Prometheus name of these counts.
    public var metricName: String { "grpc_\(side.rawValue)_flow_control_stalls_total" }

    /// Counts one wait.
    public func record(_ window: FlowControlWindow) {
        switch window {
        case .stream: streamWindow.add(1, ordering: .relaxed)
        case .connection: connectionWindow.add(1, ordering: .relaxed)
        }
    }

    /// Makes `session` count its stalls here.
    func observe(_ session: HTTP2Session) {
        session.onFlowControlStall = { [self] window in record(window) }
    }
}
