#if canImport(Glibc)
import Glibc
#endif
import GRPCProtos
import InteropTesting
import RPC
import Testing

/// The sockets of a call, looked at with getsockopt: Nagle off on both ends (TCP_NODELAY), and
/// nothing that needs privileges. NIO's `.socketOption(.tcp_nodelay)` means SOL_SOCKET option 1,
/// which is SO_DEBUG: root may set it, so it went unnoticed until a container without
/// CAP_NET_ADMIN refused every connection with EACCES.
@Suite("Socket options of RPC connections")
struct SocketOptionsTests {
    @Test("both ends of a call's connection have TCP_NODELAY and not SO_DEBUG")
    func noDelayWithoutPrivileges() async throws {
        var router = Router()
        router.unary(Methods.UnaryCall.self) { _, _ in Grpc.Testing.SimpleResponse() }
        let server = RPCServer(router: router)
        let port = try await server.start()
        let client = RPCClient(host: "127.0.0.1", port: port)
        _ = try await client.unary(Methods.UnaryCall.self, Grpc.Testing.SimpleRequest())

        let ends = Self.connectedSockets(port: port)
        #expect(ends.count == 2, "the client's socket and the server's accepted socket")
        for socket in ends {
            #expect(Self.option(socket, Int32(IPPROTO_TCP), TCP_NODELAY) == 1, "TCP_NODELAY on fd \(socket)")
            #expect(Self.option(socket, SOL_SOCKET, SO_DEBUG) == 0, "SO_DEBUG on fd \(socket)")
        }
        await client.close()
        await server.shutdown()
    }

    /// This process's TCP sockets connected to or from 127.0.0.1:`port`.
    static func connectedSockets(port: Int) -> [Int32] {
        var found: [Int32] = []
        for descriptor in Int32(0)..<4096 {
            var type: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_STREAM.rawValue) else { continue }
            if localPort(descriptor, peer: false) == port || localPort(descriptor, peer: true) == port,
               localPort(descriptor, peer: true) != nil {
                found.append(descriptor)
            }
        }
        return found
    }

    /// The port of the socket's own address, or of its peer's; nil when it has none.
    static func localPort(_ descriptor: Int32, peer: Bool) -> Int? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(descriptor, $0, &length) : getsockname(descriptor, $0, &length)
            }
        }
        guard result == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func option(_ descriptor: Int32, _ level: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(descriptor, level, name, &value, &length) == 0 ? value : -1
    }
}
