import HTTP2
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A gRPC server: HTTP/2 on SwiftNIO sockets, nghttp2 framing; cleartext (prior knowledge) by
/// default, TLS with ALPN `h2` (and optionally client certificates) with `Options.tls`.
///
/// ```swift
/// let server = RPCServer(router: router)
/// let port = try await server.start()      // 127.0.0.1, port 0 picks a free one
/// ...
/// await server.shutdown()                  // GOAWAY, finish in-flight calls, close
/// ```
public final class RPCServer: Sendable {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 0
        /// Largest request or response message (gRPC's default is 4 MiB).
        public var maxMessageSize = 4 * 1024 * 1024
        public var http2 = HTTP2Session.Settings()
        /// Abuse limits, timeouts, keepalive and its policy on clients' pings, and the max
        /// connection age of each connection (gRPC's server defaults).
        public var limits = HTTP2Limits.grpcServer
        /// Connections accepted at once; more are answered with GOAWAY(ENHANCE_YOUR_CALM).
        public var maxConnections = 1_000
        /// Run around every call, outermost first.
        public var interceptors: [any ServerInterceptor] = []
        /// Counts every call that reaches a method (started, in flight, handled by status code,
        /// handling time), around the interceptors, so calls they refuse are counted with their
        /// code. Counted in the server's call path rather than by an interceptor: that cost an
        /// async frame and an executor check per call, measured as most of the metrics' cost.
        public var metrics: RPCMetrics?
        /// How long `shutdown` lets in-flight calls finish before closing connections.
        public var shutdownGracePeriod: Duration = .seconds(10)
        /// TLS (nil: cleartext HTTP/2). Its files are read at `start` (a bad file throws there)
        /// and again whenever they change on disk, for the connections accepted after that.
        public var tls: ServerTLS?
        /// Where the server's connections count the times a response waited for its client's
        /// flow-control window (by default the process's, which the metrics endpoint shows).
        public var flowControlStalls = FlowControlStalls.server

        public init() {}

        public static func defaults(_ configure: (inout Self) -> Void) -> Self {
            var options = Self()
            configure(&options)
            return options
        }
    }

    let router: Router
    let options: Options
    let logger: Logger
    let group: any EventLoopGroup
    private let state = Mutex(State())

    private struct State {
        var listener: Channel?
        var connections: [ObjectIdentifier: Channel] = [:]
        var tls: ReloadingTLSContext?
    }

    public init(router: Router, options: Options = Options(), logger: Logger = Logger(label: "fabrikam.rpc.server"),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.router = options.metrics.map(router.counting(with:)) ?? router
        self.options = options
        self.logger = logger
        self.group = group
    }

    /// Binds and starts accepting; returns the bound port.
    @discardableResult
    public func start() async throws -> Int {
        let router = self.router
        let options = self.options
        let logger = self.logger
        let tls = try options.tls.map { try ReloadingTLSContext($0) }
        state.withLock { $0.tls = tls }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let peer = channel.remoteAddress?.description ?? "unknown"
                    if let tls {
                        // TLS in front of HTTP/2: the connection handler sees plaintext bytes. Its
                        // handshake timer starts at channelActive, so it bounds the TLS handshake too.
                        let notes = VerificationNotes()
                        try channel.pipeline.syncOperations.addHandler(TLSHandlers.server(context: tls.current(), notes: notes))
                        try channel.pipeline.syncOperations.addHandler(
                            TLSHandshakeGuard(side: .server, peer: peer, handshake: nil, verification: notes, logger: logger))
                    }
                    let session = try HTTP2Session(role: .server, settings: options.http2)
                    options.flowControlStalls.observe(session)
                    let connection = HTTP2Connection(session: session, eventLoop: channel.eventLoop, limits: options.limits)
                    let overLimit = self?.state.withLock { $0.connections.count >= options.maxConnections } ?? false
                    if overLimit {
                        // Refused politely once active: SETTINGS, GOAWAY(ENHANCE_YOUR_CALM), close.
                        connection.refuse(reason: "too many connections")
                        try channel.pipeline.syncOperations.addHandler(connection)
                        return
                    }
                    let state = ServerConnectionState(router: router, options: options, logger: logger, peer: peer)
                    state.connection = connection
                    connection.delegate = state
                    let id = ObjectIdentifier(channel)
                    self?.state.withLock { $0.connections[id] = channel }
                    state.onClose = { [weak self] in _ = self?.state.withLock { $0.connections.removeValue(forKey: id) } }
                    try channel.pipeline.syncOperations.addHandler(connection)
                }
            }
            .bind(host: options.host, port: options.port)
            .get()
        state.withLock { $0.listener = channel }
        let port = channel.localAddress?.port ?? options.port
        logger.info("serving", metadata: ["address": "\(options.host):\(port)", "methods": "\(router.paths.count)",
                                          "tls": "\(options.tls == nil ? "off" : options.tls?.clientCAFile == nil ? "on" : "mutual")"])
        return port
    }

    /// The server's TLS context (nil for cleartext): how often its files were read again, and why not.
    public var tlsContext: ReloadingTLSContext? { state.withLock { $0.tls } }

    /// Connections open now (for the metrics endpoint).
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    /// The port the server listens on, once `start` has returned (nil before, and after `shutdown`).
    public var port: Int? {
        state.withLock { $0.listener?.isActive == true ? $0.listener?.localAddress?.port : nil }
    }

    /// Graceful shutdown: stops accepting, sends GOAWAY so clients open no new calls, lets
    /// in-flight calls finish (up to the grace period), then closes every connection.
    public func shutdown() async {
        let (listener, connections) = state.withLock { ($0.listener, Array($0.connections.values)) }
        try? await listener?.close()
        // Two-step GOAWAY (RFC 9113 §6.8): first a notice that admits streams already in flight
        // towards us, then, after a round trip's grace, the final GOAWAY naming the last stream.
        for channel in connections {
            channel.eventLoop.execute {
                guard let connection = try? channel.pipeline.syncOperations.handler(type: HTTP2Connection.self) else { return }
                connection.session.sendShutdownNotice()
                connection.flush()
            }
        }
        try? await Task.sleep(for: .milliseconds(100))
        for channel in connections {
            channel.eventLoop.execute {
                guard let connection = try? channel.pipeline.syncOperations.handler(type: HTTP2Connection.self) else { return }
                connection.session.sendGoAway(errorCode: 0)
                connection.flush()
            }
        }
        let deadline = ContinuousClock.now + options.shutdownGracePeriod
        while ContinuousClock.now < deadline, !state.withLock({ $0.connections.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for channel in state.withLock({ Array($0.connections.values) }) {
            try? await channel.close()
        }
    }
}
