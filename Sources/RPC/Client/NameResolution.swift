import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// How an `RPCClient` turns its target name into addresses, and how often it asks again.
///
/// The lookup is `getaddrinfo`, which blocks (on DNS, on /etc/hosts, on nsswitch modules); it runs
/// on NIO's blocking thread pool, never on an event loop (where it would stall every connection of
/// the loop) nor on Swift's cooperative pool (two threads on a two-core machine). Calls keep using
/// the addresses they have while a new lookup runs; only the very first call waits for one.
public struct NameResolution: Sendable {
    /// How often the name is looked up again while the client is in use: endpoints come and go
    /// (a scaled deployment, a headless Kubernetes Service).
    public var interval: Duration = .seconds(30)
    /// The shortest time between two lookups. A failed connection asks for a lookup sooner than
    /// `interval` (its endpoint may be gone), but a backend that is down must not turn every call
    /// into a DNS query: such requests wait until this much time has passed since the last lookup.
    /// gRPC's DNS resolvers use 30 s; shorter here, because our deployments move endpoints by
    /// restarting containers, and a client should find the new ones within seconds.
    public var minInterval: Duration = .seconds(5)
    /// How long a call waits for a lookup under way when the client's connections have closed
    /// or failed since the last one (the endpoints may have moved) before it tries the old
    /// addresses anyway.
    static let staleWait: Duration = .seconds(1)
    /// How long a new connection to the round-robin's address has alone before the other
    /// addresses are tried too (Happy Eyeballs, RFC 8305, waits 250 ms).
    static let headStart: Duration = .milliseconds(250)

    public init() {}

    /// The lookup itself, blocking: every address of `host` (IPv4 and IPv6), in the resolver's
    /// order. Replaceable for tests (a name whose addresses change on cue).
    var lookup: @Sendable (_ host: String, _ port: Int) throws -> [SocketAddress] = NameResolution.getaddrinfoLookup

    /// `getaddrinfo` for stream sockets; duplicates dropped. Blocking: call it on a thread pool.
    static func getaddrinfoLookup(_ host: String, _ port: Int) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let result = getaddrinfo(host, String(port), &hints, &list)
        guard result == 0, let first = list else {
            throw RPCError(.unavailable, "cannot resolve \(host): \(String(cString: gai_strerror(result)))")
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            if let raw = current.pointee.ai_addr {
                switch Int32(current.pointee.ai_family) {
                case AF_INET:
                    addresses.append(SocketAddress(raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }, host: host))
                case AF_INET6:
                    addresses.append(SocketAddress(raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }, host: host))
                default:
                    break
                }
            }
            entry = current.pointee.ai_next
        }
        var seen: Set<SocketAddress> = []
        return addresses.filter { seen.insert($0).inserted }
    }

    /// Whether a lookup is due: none yet; the interval is over; or a failure (of a connection, or
    /// of the previous lookup) asked for one and the minimum interval is over.
    func isDue(resolvedAt: ContinuousClock.Instant?, wanted: Bool, now: ContinuousClock.Instant) -> Bool {
        guard let resolvedAt else { return true }
        let age = now - resolvedAt
        return age >= interval || (wanted && age >= minInterval)
    }
}
