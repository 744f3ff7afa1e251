import CoreMetrics
import HTTP2
import ServiceKit
import Synchronization

/// The gateway's HTTP metrics, through swift-metrics (the process's Prometheus registry, served on
/// the admin port by `MetricsEndpoint`):
///
/// - `http_server_requests_total{method, route, code}`: answered requests.
/// - `http_server_request_duration_seconds{method, route}`: a histogram of the time from the
///   complete request to its answer being ready (a streamed answer: its head).
/// - `http_server_requests_in_flight`: requests being worked out now.
/// - `http_server_connections{protocol}` and `http_server_connections_total{protocol}`: open and
///   accepted connections, `protocol` being `http/1.1` (HTTP/1.0 included) or `h2` (cleartext
///   prior knowledge, or TLS with ALPN), the names ALPN uses.
/// - `http_server_flow_control_stalls_total{window}`: times an HTTP/2 answer had to wait for its
///   client's flow-control window, `window` being `stream` (that stream's reader is behind) or
///   `connection` (the whole client is), as the RPC servers count theirs.
///
/// Labels stay few whatever clients send, so a scanner cannot grow the series without bound:
/// `route` is the matched route's template (`/v1/deliveries/{delivery_id}`), never the path with
/// its ids; the gateway's own pages are named by their fixed path; anything else (404, 405, a CORS
/// preflight) is `other`. `method` is one of the methods of RFC 9110 or `_OTHER` (as
/// OpenTelemetry's HTTP conventions do).
final class GatewayMetrics: Sendable {
    static let durationLabel = MetricsEndpoint.httpRequestDurationLabel
    /// The route label of a request that matched no route.
    static let otherRoute = "other"
    static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]

    /// The metric objects of one method and route, made on first use and kept: a request costs a
    /// dictionary lookup under a lock plus the increments.
    final class RouteMetrics: Sendable {
        let dimensions: [(String, String)]
        let duration: Timer
        let answered = Mutex<[Int: Counter]>([:])

        init(method: String, route: String) {
            dimensions = [("method", method), ("route", route)]
            duration = Timer(label: GatewayMetrics.durationLabel, dimensions: dimensions)
        }

        func answered(_ status: Int) -> Counter {
            answered.withLock { counters in
                if let counter = counters[status] { return counter }
                let counter = Counter(label: "http_server_requests_total", dimensions: dimensions + [("code", String(status))])
                counters[status] = counter
                return counter
            }
        }
    }

    /// An HTTP protocol of the listener, as ALPN names it.
    enum ConnectionProtocol: String, Sendable, CaseIterable {
        case http1 = "http/1.1"
        case http2 = "h2"
    }

    private let routes = Mutex<[String: RouteMetrics]>([:])
    let inFlight: Meter
    private let openConnections: [ConnectionProtocol: Meter]
    private let acceptedConnections: [ConnectionProtocol: Counter]
    private let streamStalls: Counter
    private let connectionStalls: Counter

    init() {
        MetricsEndpoint.describe("http_server_requests_total", "HTTP requests the gateway answered, by method, route template and status code.")
        MetricsEndpoint.describe(Self.durationLabel, "Time from a complete HTTP request to its answer being ready (a stream: its head), by method and route template.")
        MetricsEndpoint.describe("http_server_requests_in_flight", "HTTP requests the gateway is working on.")
        MetricsEndpoint.describe("http_server_connections", "Open client connections, by HTTP protocol.")
        MetricsEndpoint.describe("http_server_connections_total", "Client connections accepted, by HTTP protocol.")
        inFlight = Meter(label: "http_server_requests_in_flight")
        var open: [ConnectionProtocol: Meter] = [:]
        var accepted: [ConnectionProtocol: Counter] = [:]
        for kind in ConnectionProtocol.allCases {
            open[kind] = Meter(label: "http_server_connections", dimensions: [("protocol", kind.rawValue)])
            accepted[kind] = Counter(label: "http_server_connections_total", dimensions: [("protocol", kind.rawValue)])
        }
        openConnections = open
        acceptedConnections = accepted
        MetricsEndpoint.describe("http_server_flow_control_stalls_total",
                                 "Times an HTTP/2 answer waited for its client's flow-control window, by the window that stopped it.")
        streamStalls = Counter(label: "http_server_flow_control_stalls_total", dimensions: [("window", "stream")])
        connectionStalls = Counter(label: "http_server_flow_control_stalls_total", dimensions: [("window", "connection")])
    }

    /// Counts one wait of an HTTP/2 answer for the client's window.
    func flowControlStalled(_ window: FlowControlWindow) {
        switch window {
        case .stream: streamStalls.increment()
        case .connection: connectionStalls.increment()
        }
    }

    /// A method as a label: the standard ones as sent, anything else `_OTHER`.
    static func methodLabel(_ method: String) -> String {
        knownMethods.contains(method) ? method : "_OTHER"
    }

    func route(method: String, route: String) -> RouteMetrics {
        let method = Self.methodLabel(method)
        let key = method + " " + route
        return routes.withLock { routes in
            if let existing = routes[key] { return existing }
            let made = RouteMetrics(method: method, route: route)
            routes[key] = made
            return made
        }
    }

    /// Counts one answered request and its time.
    func answered(method: String, route: String, status: Int, elapsed: Duration) {
        let metrics = self.route(method: method, route: route)
        let (seconds, attoseconds) = elapsed.components
        metrics.duration.recordNanoseconds(min(seconds, Int64.max / 1_000_000_000 - 1) * 1_000_000_000 + attoseconds / 1_000_000_000)
        metrics.answered(status).increment()
    }

    /// A connection's protocol is known (the listener's sniffer decided): counted as accepted and
    /// open until `connectionClosed`.
    func connectionOpened(_ kind: ConnectionProtocol) {
        acceptedConnections[kind]?.increment()
        openConnections[kind]?.increment()
    }

    func connectionClosed(_ kind: ConnectionProtocol) {
        openConnections[kind]?.decrement()
    }
}
