import CoreMetrics
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ProtobufKit
import RPC
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The process's metrics in Prometheus text format on an admin port: `GET /metrics`.
///
/// Everything recorded through swift-metrics (the calls the RPC servers count, see
/// `RPCServer.Options.metrics`, the calls `MetricsClientInterceptor` counts, and whatever a
/// service records) goes to one Prometheus registry;
/// gauges that are cheaper to read when scraped than to keep current (a queue's depth, deliveries
/// per stage) come from `collectors`, run on each scrape; and the process's own figures (CPU,
/// resident memory, open files, start time) as Prometheus client libraries name them.
///
/// The port is `FABRIKAM_METRICS_PORT`, or the service's RPC port + 100 (the gateway's HTTP port
/// + 100); `off` switches it off. A port that cannot be bound is logged and the service goes on:
/// metrics are for operators, and must not take the service down.
public final class MetricsEndpoint: Sendable {
    /// The variable that sets the admin port (or `off`).
    public static let portVariable = "FABRIKAM_METRICS_PORT"
    /// The admin port's distance from the service's own port, when the variable is unset.
    public static let defaultPortOffset = 100

    /// One sample a collector reports: `name{labels} value`, of a gauge.
    public struct Sample: Sendable {
        public var name: String
        public var labels: [(String, String)]
        public var value: Double
        public var help: String
        public init(_ name: String, _ labels: [(String, String)] = [], value: Double, help: String) {
            self.name = name
            self.labels = labels
            self.value = value
            self.help = help
        }
    }

    /// The gateway's HTTP request histogram (`GatewayMetrics`), whose buckets the registry sets.
    public static let httpRequestDurationLabel = "http_server_request_duration_seconds"

    /// The registry every swift-metrics object of this process reports to.
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        for side in [RPCMetrics.Side.server, .client] {
            factory.valueHistogramBuckets[RPCMetrics.handlingSecondsLabel(side)] = RPCMetrics.durationBucketSeconds
        }
        // The gateway's requests: the same buckets, from a cached answer (100 µs) to a slow upstream.
        factory.durationHistogramBuckets[httpRequestDurationLabel] = RPCMetrics.durationBuckets
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    private let collectors = Mutex<[@Sendable () async -> [Sample]]>([])
    private let channel = Mutex<(any Channel)?>(nil)
    private let startTime = Date().timeIntervalSince1970

    public init() { _ = Self.registry }

    /// Adds a source of gauges read on each scrape.
    public func addCollector(_ collector: @escaping @Sendable () async -> [Sample]) {
        collectors.withLock { $0.append(collector) }
    }

    /// Whether this process records call metrics at all: with `FABRIKAM_METRICS_PORT=off` nobody
    /// can read them, so the services count no calls (and
    /// tools/bench-observability.sh measures what they cost against that).
    public static let isEnabled = ProcessInfo.processInfo.environment[portVariable] != "off"

    /// The admin port for a service listening on `servicePort`: nil when switched off.
    public static func port(forServicePort servicePort: Int, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Int? {
        guard let text = environment[portVariable] else { return servicePort + defaultPortOffset }
        if text == "off" { return nil }
        guard let port = Int(text), (0...65535).contains(port) else {
            throw ConfigurationError("\(portVariable) must be a port number or off, got \"\(text)\"")
        }
        return port
    }

    /// Starts serving on `host:port` (0: any free port); returns the bound port.
    @discardableResult
    public func start(host: String, port: Int) async throws -> Int {
        let bound = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ScrapeHandler(endpoint: self))
                }
            }
            .bind(host: host, port: port)
            .get()
        channel.withLock { $0 = bound }
        return bound.localAddress?.port ?? port
    }

    /// Stops listening.
    public func stop() async {
        let bound = channel.withLock { channel in defer { channel = nil }; return channel }
        try? await bound?.close()
    }

    /// HELP texts of the families made through swift-metrics (which has no place for one):
    /// Prometheus shows them, and promtool's lint asks for them.
    static let helpTexts = Mutex<[String: String]>({
        var texts: [String: String] = [:]
        for side in ["server", "client"] {
            texts["grpc_\(side)_started_total"] = "RPCs started on the \(side)."
            texts["grpc_\(side)_handled_total"] = "RPCs completed on the \(side), by status code."
            texts["grpc_\(side)_handling_seconds"] = "Time from an RPC's start to its status on the \(side)."
            texts["grpc_\(side)_in_flight"] = "RPCs in progress on the \(side)."
        }
        texts["fabrikam_queue_redeliveries_total"] = "Messages handed out again (a lease ran out, a retry)."
        texts["fabrikam_queue_settled_total"] = "Messages a consumer settled, by outcome."
        return texts
    }())

    /// Gives a metric family made through swift-metrics its HELP text.
    public static func describe(_ name: String, _ help: String) {
        helpTexts.withLock { $0[name] = help }
    }

    /// `text` with a HELP line before every TYPE line that has none.
    static func addingHelp(_ text: [UInt8]) -> [UInt8] {
        let texts = helpTexts.withLock { $0 }
        var result: [UInt8] = []
        result.reserveCapacity(text.count + 1024)
        var previous: Substring = ""
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("# TYPE "), let name = line.dropFirst(7).split(separator: " ").first, !previous.hasPrefix("# HELP \(name) ") {
                result += Array("# HELP \(name) \(texts[String(name)] ?? "See docs/services.md, Metrics.")\n".utf8)
            }
            result += Array(line.utf8)
            result.append(UInt8(ascii: "\n"))
            previous = line
        }
        return result
    }

    /// The whole exposition: the registry's metrics, the collectors' gauges, the process's figures.
    public func exposition() async -> [UInt8] {
        var text = Self.addingHelp(Self.registry.emitToBuffer())
        var samples: [Sample] = []
        for collector in collectors.withLock({ $0 }) { samples += await collector() }
        samples += flowControlSamples()
        samples += processSamples()
        var described: Set<String> = []
        for sample in samples {
            var line = ""
            if described.insert(sample.name).inserted {
                line += "# HELP \(sample.name) \(sample.help)\n# TYPE \(sample.name) \(sample.name.hasSuffix("_total") ? "counter" : "gauge")\n"
            }
            line += sample.name
            if !sample.labels.isEmpty {
                line += "{" + sample.labels.map { "\($0.0)=\"\(Self.escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
            }
            line += " \(Self.format(sample.value))\n"
            text += Array(line.utf8)
        }
        return text
    }

    /// A label value as the text format wants it: backslash, quote and newline escaped.
    static func escapeLabel(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }

    /// The RPC runtime's flow-control stalls, both sides, both windows (a series that is 0 still
    /// shows, so a rate() over it starts from the process's start).
    func flowControlSamples() -> [Sample] {
        [FlowControlStalls.server, .client].flatMap { stalls in
            let help = "Times a \(stalls.side.rawValue) send waited for the peer's HTTP/2 flow-control window, by the window that was exhausted."
            return [Sample(stalls.metricName, [("window", "stream")], value: Double(stalls.stream), help: help),
                    Sample(stalls.metricName, [("window", "connection")], value: Double(stalls.connection), help: help)]
        }
    }

    /// CPU seconds, resident bytes, open descriptors and start time, from /proc.
    func processSamples() -> [Sample] {
        var samples = [Sample("process_start_time_seconds", value: startTime, help: "Start time of the process since the Unix epoch in seconds.")]
        var usage = rusage()
        if getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 {
            let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
            samples.append(Sample("process_cpu_seconds_total", value: cpu, help: "Total user and system CPU time spent in seconds."))
        }
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
           let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) {
            samples.append(Sample("process_resident_memory_bytes", value: pages * Double(sysconf(Int32(_SC_PAGESIZE))), help: "Resident memory size in bytes."))
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            samples.append(Sample("process_open_fds", value: Double(descriptors.count), help: "Number of open file descriptors."))
        }
        return samples
    }
}

extension MetricsEndpoint.Sample {
    /// One gauge sample per value of `E`, labelled `label` with the value's proto name, from
    /// `counts` (raw value -> count); a value without rows is 0, so its series never vanishes.
    public static func perValue<E: ProtobufKit.Enum>(_ type: E.Type, name: String, label: String, counts: [Int64: Int], help: String) -> [Self] {
        E.allCases.filter { $0.rawValue != 0 || counts[0] != nil }.map { value in
            Self(name, [(label, value.protoName ?? "\(value.rawValue)")], value: Double(counts[Int64(value.rawValue)] ?? 0), help: help)
        }
    }
}

/// Answers `GET /metrics` (and `/`) with the exposition; anything else is 404 or 405.
private final class ScrapeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let endpoint: MetricsEndpoint
    private var head: HTTPRequestHead?

    init(endpoint: MetricsEndpoint) { self.endpoint = endpoint }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            let keepAlive = head.isKeepAlive
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            if head.method != .GET && head.method != .HEAD {
                respond(context, status: .methodNotAllowed, body: Array("GET only\n".utf8), keepAlive: keepAlive, headOnly: false)
            } else if path != "/metrics" && path != "/" {
                respond(context, status: .notFound, body: Array("metrics are at /metrics\n".utf8), keepAlive: keepAlive, headOnly: false)
            } else {
                let headOnly = head.method == .HEAD
                let endpoint = self.endpoint
                context.eventLoop.makeFutureWithTask { await endpoint.exposition() }.whenSuccess { body in
                    let (handler, context) = loopBound.value
                    handler.respond(context, status: .ok, body: body, keepAlive: keepAlive, headOnly: headOnly)
                }
            }
        }
    }

    func respond(_ context: ChannelHandlerContext, status: HTTPResponseStatus, body: [UInt8], keepAlive: Bool, headOnly: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8")
        headers.add(name: "content-length", value: "\(body.count)")
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !headOnly { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil) }
        let channel = context.channel  // Sendable, unlike the context, for the completion
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
