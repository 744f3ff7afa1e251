import NIOCore
import NIOPosix
import RPC
import ServiceKit
import Synchronization

/// The gateway's clients of the services: one per service per event loop, so a request handled
/// on an HTTP connection's event loop calls its service over a connection on the same loop, with
/// no thread hop in between (measured: the hops were a large part of the gateway's cost). Calls
/// that are safe to repeat are retried on UNAVAILABLE (`RetryPolicy.gatewayUpstream`).
final class UpstreamPool: Sendable {
    private let loops: [ObjectIdentifier]
    private let clients: [String: [RPCClient]]
    private let upstreamNames = Mutex([String: String]())

    init(addresses: [String: (host: String, port: Int)], tls: ClientTLS? = nil, group: MultiThreadedEventLoopGroup = .singleton) {
        let loops = Array(group.makeIterator())
        self.loops = loops.map { ObjectIdentifier($0) }
        var clients: [String: [RPCClient]] = [:]
        for (name, address) in addresses {
            clients[name] = loops.map {
                RPCClient(host: address.host, port: address.port, options: .defaults {
                    // With tracing on, each attempt is a CLIENT span under the request's span
                    // (off, no interceptor is added: the calls cost what they did).
                    $0.interceptors = [RetryInterceptor(policy: .gatewayUpstream)] + (Tracing.recorder == nil ? [] : [TracingClientInterceptor()])
                    // The services over (mutual) TLS when configured (FABRIKAM_TLS_CA, CLIENT_CERT/KEY).
                    $0.tls = tls
                }, group: $0)
            }
        }
        self.clients = clients
    }

    /// The client of `name` on the current event loop (the first one off the loops).
    func client(_ name: String) -> RPCClient? {
        guard let list = clients[name] else { return nil }
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, let index = loops.firstIndex(of: ObjectIdentifier(current)) {
            return list[index]
        }
        return list[0]
    }

    /// The client for a fully qualified service name (`fabrikam.dronedelivery.<name>.v1.<Service>`
    /// is upstream `<name>`). The name is worked out once per service.
    func client(forService service: String) -> RPCClient? {
        if let name = upstreamNames.withLock({ $0[service] }) { return client(name) }
        let parts = service.split(separator: ".")
        guard parts.count >= 4 else { return nil }
        let name = String(parts[2])
        upstreamNames.withLock { $0[service] = name }
        return client(name)
    }

    func close() async {
        for list in clients.values { for client in list { await client.close() } }
    }
}
