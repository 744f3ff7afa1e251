import HTTP2
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

extension RPCClient {
    /// An open connection: its channel and its loop-bound state.
    struct ConnectionHandle: Sendable {
        let channel: Channel
        let state: NIOLoopBound<ClientConnectionState>
        /// Whether the connection takes no new calls (GOAWAY or closed), readable from any thread.
        let status: ConnectionStatus

        var isUsable: Bool { channel.isActive && !status.isDraining }
    }

    /// The client's addresses and connections: one connection per resolved address, picked
    /// round-robin. Addresses that failed to connect wait out an exponential backoff before they
    /// are tried again. Guarded by the client's mutex; nothing here blocks or awaits.
    struct Pool {
        var addresses: [SocketAddress] = []
        /// When the last lookup finished, and the lookup running now (shared by every call that
        /// needs its answer).
        var resolvedAt: ContinuousClock.Instant?
        var resolution: EventLoopFuture<[SocketAddress]>?
        /// A connection failed (or the last lookup did) since the last lookup: look again once
        /// `NameResolution.minInterval` allows.
        var resolutionWanted = false
        var connections: [SocketAddress: ConnectionHandle] = [:]
        /// Connections being opened: a call that finds one here waits for it instead of opening
        /// another (fifty first calls share one connection).
        var connecting: [SocketAddress: EventLoopFuture<ConnectionHandle>] = [:]
        var backoff: [SocketAddress: (until: ContinuousClock.Instant, delay: Duration)] = [:]
        var next = 0
        /// The keepalive interval of new connections; doubled each time a server says
        /// "too_many_pings" (as grpc-go does), so that the client settles on what servers accept.
        var keepaliveInterval: Duration?

        enum Pick {
            case ready(ConnectionHandle)
            case connecting(EventLoopFuture<ConnectionHandle>)
            /// Nobody is connecting to `address`: this caller does, and completes `promise` for
            /// those who come while it does.
            case connect(SocketAddress, EventLoopPromise<ConnectionHandle>)
            case backingOff(until: ContinuousClock.Instant)
        }

        /// The next address round-robin, and what a call does about it.
        mutating func pick(among addresses: [SocketAddress], loops: any EventLoopGroup) -> (SocketAddress, Pick) {
            let address = addresses[next % addresses.count]
            next &+= 1
            return (address, use(address, loops: loops))
        }

        /// What a call does about `address` (the round-robin position stays where it is).
        mutating func use(_ address: SocketAddress, loops: any EventLoopGroup) -> Pick {
            if let handle = connections[address] {
                if handle.isUsable { return .ready(handle) }
                connections[address] = nil
            }
            if let future = connecting[address] { return .connecting(future) }
            if let backoff = backoff[address], ContinuousClock.now < backoff.until { return .backingOff(until: backoff.until) }
            let promise = loops.next().makePromise(of: ConnectionHandle.self)
            connecting[address] = promise.futureResult
            return .connect(address, promise)
        }

        mutating func connected(_ address: SocketAddress, _ handle: ConnectionHandle) {
            connecting[address] = nil
            connections[address] = handle
            backoff[address] = nil
        }

        /// A connection attempt failed: back off from the address (100 ms doubling to 5 s) and
        /// ask for a new lookup (the endpoint may have moved).
        mutating func failed(_ address: SocketAddress) {
            connecting[address] = nil
            let previous = backoff[address]?.delay ?? .milliseconds(50)
            let delay = min(previous * 2, .seconds(5))
            backoff[address] = (.now + delay, delay)
            resolutionWanted = true
        }

        /// When the first of `addresses` comes out of its backoff.
        func earliestRetry(among addresses: [SocketAddress]) -> ContinuousClock.Instant? {
            addresses.compactMap { backoff[$0]?.until }.min()
        }
    }

    // MARK: Name resolution

    /// The addresses calls are spread over: the fixed endpoints, or those the target name
    /// resolved to, looked up again in the background every `NameResolution.interval` (and sooner
    /// after a failure). Only the first call, and calls while every lookup so far found nothing,
    /// wait for a lookup.
    func currentAddresses() async throws -> [SocketAddress] {
        if let fixedEndpoints { return fixedEndpoints }
        let (addresses, pending, promise, stale) = pool.withLock { pool in
            let stale = pool.resolutionWanted && !pool.connections.values.contains { $0.isUsable }
            let (pending, promise) = beginLookupIfDue(&pool)
            return (pool.addresses, pending, promise, stale)
        }
        if let promise { startLookup(promise) }
        if !addresses.isEmpty {
            // A connection closed or failed since the last lookup and none is left to use: the
            // endpoint may have been replaced (a restarted container or pod), and connecting to
            // an address nobody holds any more costs the whole connect timeout. The lookup under
            // way takes milliseconds; wait for it a little, then use what there is.
            if stale, let pending, let fresh = await Self.value(of: pending, within: NameResolution.staleWait), !fresh.isEmpty {
                return fresh
            }
            return addresses
        }
        guard let pending else { throw RPCError(.unavailable, "\(host) did not resolve to any address (looked up again soon)") }
        let fresh = try await pending.get()
        guard !fresh.isEmpty else { throw RPCError(.unavailable, "\(host) does not resolve to any address") }
        return fresh
    }

    /// The lookup running now, or a new one if one is due (its promise then returned too, for
    /// the caller to start outside the lock).
    private func beginLookupIfDue(_ pool: inout Pool) -> (EventLoopFuture<[SocketAddress]>?, EventLoopPromise<[SocketAddress]>?) {
        guard pool.resolution == nil, options.resolution.isDue(resolvedAt: pool.resolvedAt, wanted: pool.resolutionWanted, now: .now) else {
            return (pool.resolution, nil)
        }
        let promise = group.next().makePromise(of: [SocketAddress].self)
        pool.resolution = promise.futureResult
        return (promise.futureResult, promise)
    }

    /// `future`'s value, or nil when it fails or has not come within `limit`.
    private static func value<T: Sendable>(of future: EventLoopFuture<T>, within limit: Duration) async -> T? {
        let loop = future.eventLoop
        let bounded = loop.makePromise(of: T?.self)
        let settled = SettledOnce()
        let timer = loop.scheduleTask(in: .nanoseconds(limit.nanosecondsClamped)) {
            if settled.claim() { bounded.succeed(nil) }
        }
        future.whenComplete { result in
            timer.cancel()
            if settled.claim() { bounded.succeed(try? result.get()) }
        }
        return try? await bounded.futureResult.get()
    }

    /// Runs the lookup on NIO's blocking pool and takes in its answer. A lookup that fails or
    /// finds nothing changes nothing: the addresses (and connections) that work stay in use.
    private func startLookup(_ promise: EventLoopPromise<[SocketAddress]>) {
        let lookup = options.resolution.lookup
        let host = self.host
        let port = self.port
        promise.futureResult.whenComplete { [weak self] result in self?.lookupFinished(result) }
        NIOThreadPool.singleton.submit { state in
            guard case .active = state else { return promise.fail(RPCError(.unavailable, "the resolver's thread pool has stopped")) }
            do {
                promise.succeed(try lookup(host, port))
            } catch let error as RPCError {
                promise.fail(error)
            } catch {
                promise.fail(RPCError(.unavailable, "cannot resolve \(host): \(error)"))
            }
        }
    }

    private func lookupFinished(_ result: Result<[SocketAddress], Error>) {
        let retired = pool.withLock { pool -> [ConnectionHandle] in
            pool.resolution = nil
            pool.resolvedAt = .now
            guard case .success(let fresh) = result, !fresh.isEmpty else {
                pool.resolutionWanted = true
                return []
            }
            pool.resolutionWanted = false
            pool.addresses = fresh
            let kept = Set(fresh)
            var retired: [ConnectionHandle] = []
            for (address, handle) in pool.connections where !kept.contains(address) {
                pool.connections[address] = nil
                retired.append(handle)
            }
            pool.backoff = pool.backoff.filter { kept.contains($0.key) }
            return retired
        }
        // Endpoints that left the name: their calls in flight finish, then the connection closes.
        for handle in retired {
            let state = handle.state
            handle.channel.eventLoop.execute { state.value.retire() }
        }
    }

    // MARK: Connections

    /// A usable connection, round-robin over the addresses, connecting as needed: one connection
    /// attempt per address at a time, whatever the number of calls waiting for it.
    ///
    /// Without `waitForReady`, a call fails fast with UNAVAILABLE when no address can be
    /// connected to. With it, the call waits for an address to come out of its backoff and tries
    /// again, until one connects or `deadline` passes (DEADLINE_EXCEEDED).
    func connection(deadline: ContinuousClock.Instant?, waitForReady: Bool) async throws -> ConnectionHandle {
        while true {
            let addresses: [SocketAddress]
            do {
                addresses = try await currentAddresses()
            } catch {
                guard waitForReady else { throw error }
                try await waitBeforeTryingAgain(until: .now + .milliseconds(200), deadline: deadline, lastError: error)
                continue
            }
            // The next address round-robin. When it has no connection ready, its attempt gets a
            // head start (as Happy Eyeballs gives the preferred address); if it has not connected
            // by then, every other address not backing off is tried too, and the first to
            // connect takes the call. An address nobody holds any more (a stopped replica whose
            // packets vanish) would otherwise cost the whole connect timeout before the next
            // one is tried. Attempts that finish later stay in the pool for later calls.
            var attempts: [EventLoopFuture<ConnectionHandle>] = []
            let (picked, pick) = pool.withLock { $0.pick(among: addresses, loops: group) }
            if case .ready(let handle) = pick { return handle }
            if let attempt = attempt(pick, address: picked, deadline: deadline) {
                // An attempt another call started already had its head start.
                if case .connect = pick, let handle = await Self.value(of: attempt, within: NameResolution.headStart) { return handle }
                attempts.append(attempt)
            }
            for address in addresses where address != picked {
                let pick = pool.withLock { $0.use(address, loops: group) }
                if case .ready(let handle) = pick { return handle }
                if let attempt = attempt(pick, address: address, deadline: deadline) { attempts.append(attempt) }
            }
            let attempted = !attempts.isEmpty
            var lastError: Error?
            if attempted {
                do { return try await Self.firstSuccess(of: attempts, on: group.next()) } catch { lastError = error }
            }
            let target = "\(host):\(port) (\(addresses.count) address(es))"
            // Every address backing off and none tried: this client refused the call without
            // trying, and a retry right away would be refused the same way.
            let failure = attempted
                ? RPCError(.unavailable, "cannot connect to \(target): \(lastError.map { "\($0)" } ?? "unknown error")")
                : RPCError(.unavailable, "cannot connect to \(target): every address is backing off after failed connection attempts", origin: .local)
            guard waitForReady else { throw failure }
            let retry = pool.withLock { $0.earliestRetry(among: addresses) } ?? .now + .milliseconds(100)
            try await waitBeforeTryingAgain(until: retry, deadline: deadline, lastError: failure)
        }
    }

    /// Wait-for-ready: sleeps until `instant`, or fails with DEADLINE_EXCEEDED if the deadline
    /// comes first; a cancelled task ends the wait with CANCELLED.
    private func waitBeforeTryingAgain(until instant: ContinuousClock.Instant, deadline: ContinuousClock.Instant?, lastError: Error) async throws {
        if let deadline, deadline <= instant {
            if deadline > .now { try? await Task.sleep(until: deadline) }
            throw RPCError(.deadlineExceeded, "the deadline passed while waiting for \(host):\(port) to be ready (last: \(lastError))")
        }
        do {
            try await Task.sleep(until: instant)
        } catch {
            throw RPCError(.cancelled, "the call was cancelled while waiting for \(host):\(port) to be ready")
        }
    }

    /// The connection attempt `pick` stands for: one under way, or one started now (`.ready`:
    /// the connection itself); nil when the address is backing off.
    private func attempt(_ pick: Pool.Pick, address: SocketAddress, deadline: ContinuousClock.Instant?) -> EventLoopFuture<ConnectionHandle>? {
        switch pick {
        case .ready(let handle):
            return handle.channel.eventLoop.makeSucceededFuture(handle)
        case .connecting(let future):
            return future
        case .connect(let address, let promise):
            Task { await self.connect(to: address, deadline: deadline, completing: promise) }
            return promise.futureResult
        case .backingOff:
            return nil
        }
    }

    /// Connects to `address` for the pool: the connection (or the failure, which backs the
    /// address off) goes to `promise`, which every call waiting for this address shares.
    private func connect(to address: SocketAddress, deadline: ContinuousClock.Instant?, completing promise: EventLoopPromise<ConnectionHandle>) async {
        do {
            let handle = try await connect(to: address, deadline: deadline)
            pool.withLock { $0.connected(address, handle) }
            promise.succeed(handle)
        } catch {
            pool.withLock { $0.failed(address) }
            promise.fail(error)
        }
    }

    /// The first of `attempts` to succeed; when all fail, the last failure.
    private static func firstSuccess(of attempts: [EventLoopFuture<ConnectionHandle>], on loop: any EventLoop) async throws -> ConnectionHandle {
        let first = loop.makePromise(of: ConnectionHandle.self)
        let settled = SettledOnce()
        let failures = FailureCount()
        for attempt in attempts {
            attempt.whenComplete { result in
                switch result {
                case .success(let handle):
                    if settled.claim() { first.succeed(handle) }
                case .failure(let error):
                    if failures.increment() == attempts.count, settled.claim() { first.fail(error) }
                }
            }
        }
        return try await first.futureResult.get()
    }

    /// Opens a connection to `address`: TCP (within the connect timeout, and the call's deadline),
    /// then TLS when configured (the connection is returned once TLS is up with ALPN h2), then
    /// the HTTP/2 handshake is left to run on its own.
    func connect(to address: SocketAddress, deadline: ContinuousClock.Instant?) async throws -> ConnectionHandle {
        let maxMessageSize = options.maxMessageSize
        let stalls = options.flowControlStalls
        let limits = options.limits.with(keepaliveInterval: pool.withLock { $0.keepaliveInterval })
        let started = ContinuousClock.now
        var timeout = options.connectTimeout
        if let deadline { timeout = max(min(timeout, deadline - .now), .milliseconds(1)) }
        let tlsContext = try currentTLSContext()
        let serverHostname = tlsServerHostname
        let peer = "the server at \(host):\(port) (\(address))"
        let loop = group.next()
        let handshake = tlsContext == nil ? nil : loop.makePromise(of: Void.self)
        let notes = VerificationNotes()
        let presentsCertificate = options.tls?.certificateChainFile != nil
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.nanoseconds(timeout.nanosecondsClamped))
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { [weak self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Manual flow control (the default): responses are acknowledged as the caller
                        // reads them, so a slow reader pushes back on the server.
                        let session = try HTTP2Session(role: .client, settings: HTTP2Session.Settings())
                        stalls.observe(session)
                        let connection = HTTP2Connection(session: session, eventLoop: channel.eventLoop, limits: limits)
                        let state = ClientConnectionState(maxMessageSize: maxMessageSize)
                        state.connection = connection
                        let id = ObjectIdentifier(channel)
                        state.onClose = { self?.connectionClosed(id, address: address) }
                        state.onTooManyPings = { self?.serverSaidTooManyPings() }
                        connection.delegate = state
                        if let tlsContext {
                            let guardHandler = TLSHandshakeGuard(side: .client, peer: peer, handshake: handshake, verification: notes,
                                                                 presentsCertificate: presentsCertificate)
                            // After the handshake (TLS 1.3: the server checks our certificate then),
                            // the reason goes into the calls' UNAVAILABLE instead of "connection closed".
                            guardHandler.onFailure = { [weak state] reason in state?.closeReason = reason }
                            try channel.pipeline.syncOperations.addHandler(
                                TLSHandlers.client(context: tlsContext, serverHostname: serverHostname, notes: notes))
                            try channel.pipeline.syncOperations.addHandler(guardHandler)
                        }
                        try channel.pipeline.syncOperations.addHandler(connection)
                    }
                }
                .connect(to: address)
                .get()
        } catch {
            handshake?.fail(error)  // never left pending (NIO reports leaked promises)
            throw error
        }
        do {
            try await Self.refuseSelfConnection(channel)
        } catch let error as RPCError {
            handshake?.fail(error)
            throw error.markedLocal()
        }
        if let handshake {
            // The connection is usable once TLS is up with ALPN h2; a failure names its reason.
            let remaining = max(options.connectTimeout - (ContinuousClock.now - started), .milliseconds(1))
            let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(remaining.nanosecondsClamped)) {
                handshake.fail(RPCError(.unavailable, "TLS: the handshake with \(peer) did not finish within the connect timeout"))
            }
            defer { timer.cancel() }
            do {
                try await handshake.futureResult.get()
            } catch {
                try? await channel.close()
                throw error
            }
        }
        let (state, status) = try await channel.eventLoop.submit {
            // Gone already: the server hung up at once (with TLS 1.3, how a server that refuses
            // our client certificate answers, just after our handshake ended).
            guard let connection = try? channel.pipeline.syncOperations.handler(type: HTTP2Connection.self),
                  let state = connection.delegate as? ClientConnectionState else {
                throw RPCError(.unavailable, notes.failure.map { "the connection closed at once: \($0)" } ?? "the connection closed at once")
            }
            return (NIOLoopBound(state, eventLoop: channel.eventLoop), state.status)
        }.get()
        return ConnectionHandle(channel: channel, state: state, status: status)
    }

    /// A connection closed (the server went away, an idle timeout, GOAWAY): calls pick another,
    /// and the name is looked up again soon, since its endpoints may have changed.
    private func connectionClosed(_ id: ObjectIdentifier, address: SocketAddress) {
        let promise = pool.withLock { pool -> EventLoopPromise<[SocketAddress]>? in
            pool.resolutionWanted = true
            // Not in the pool: closed by `close()`, or already set aside; no lookup for that.
            guard let handle = pool.connections[address], ObjectIdentifier(handle.channel) == id else { return nil }
            pool.connections[address] = nil
            // The lookup starts now, not with the next call: its answer is usually in by then.
            return fixedEndpoints == nil ? beginLookupIfDue(&pool).1 : nil
        }
        if let promise { startLookup(promise) }
    }

    /// gRPC A8: a server that found our keepalive pings too frequent said so in its GOAWAY; the
    /// next connections ping half as often (grpc-go does the same), capped at a day.
    private func serverSaidTooManyPings() {
        pool.withLock { pool in
            pool.keepaliveInterval = pool.keepaliveInterval.map { min($0 * 2, .seconds(24 * 3600)) }
        }
    }

    /// The TLS context for a new connection (nil: cleartext), read from the files on first use
    /// and again when they change; files that cannot be used fail the call with a clear reason.
    func currentTLSContext() throws -> NIOSSLContext? {
        guard let tls = options.tls else { return nil }
        return try tlsContext.withLock { cached in
            if let cached { return cached.current() }
            do {
                let made = try ReloadingTLSContext(tls)
                cached = made
                return made.current()
            } catch {
                throw RPCError(.unavailable, "TLS configuration: \(error)", origin: .local)
            }
        }
    }

    /// SNI and the name the server's certificate must carry: the configured server name, else
    /// the host (an IP address is checked against the certificate's IP SANs, without SNI).
    var tlsServerHostname: String? { options.tls.flatMap { $0.serverHostname(connectingTo: host) } }

    /// The keepalive interval new connections get (see `Pool.keepaliveInterval`).
    var keepaliveInterval: Duration? { pool.withLock { $0.keepaliveInterval } }
}

extension HTTP2Limits {
    func with(keepaliveInterval: Duration?) -> HTTP2Limits {
        var limits = self
        limits.keepaliveInterval = keepaliveInterval
        return limits
    }
}

/// Failed connection attempts so far, counted from the futures' callbacks.
private final class FailureCount: Sendable {
    private let count = Atomic<Int>(0)
    /// The count after this failure.
    func increment() -> Int { count.add(1, ordering: .acquiringAndReleasing).newValue }
}

/// One of several racing completions wins (a promise must be completed once).
private final class SettledOnce: Sendable {
    private let done = Atomic<Bool>(false)
    /// True for the first caller only.
    func claim() -> Bool { !done.exchange(true, ordering: .acquiringAndReleasing) }
}
