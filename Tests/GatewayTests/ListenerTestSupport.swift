import Foundation
import Gateway
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP connection to 127.0.0.1:`port`, for tests that must see the gateway's HTTP/1.x
/// bytes exactly as they are written (no HTTP client in between). Reads give up after
/// `receiveTimeout` seconds without a byte. The caller closes the descriptor.
func connectLoopback(port: Int, receiveTimeout: Int) throws -> Int32 {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(socket)
        throw POSIXError(.ECONNREFUSED)
    }
    var timeout = timeval(tv_sec: receiveTimeout, tv_usec: 0)
    setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return socket
}

/// Runs `body` with the port of a real gateway listener on 127.0.0.1 whose upstreams all point
/// at port 1, where nothing listens: routes that need a service answer 503 after a failed
/// connection attempt, the gateway's own routes (`/healthz`, `/openapi.json`) answer at once.
func withUnreachableUpstreamsGateway(_ body: (Int) async throws -> Void) async throws {
    var configuration = GatewayConfiguration()
    configuration.port = 0
    for name in configuration.upstreams.keys { configuration.upstreams[name] = "127.0.0.1:1" }
    let gateway = try Gateway(configuration: configuration)
    let server = try GatewayHTTPServer(gateway: gateway)
    let port = try await server.start(host: "127.0.0.1", port: 0)
    do {
        try await body(port)
    } catch {
        await server.shutdown()
        await gateway.close()
        throw error
    }
    await server.shutdown()
    await gateway.close()
}
