#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
@testable import RPC
import Testing
import TestSupport

/// A client connection that the kernel connected to itself (TCP simultaneous open: the local
/// port chosen for it was the very port it dialled) is dropped, as Go's net package does.
@Suite("The RPC client drops a connection to itself")
struct SelfConnectionTests {
    @Test("a socket bound to the port it connects to is connected to itself: refused and closed; a real connection passes")
    func selfConnectionIsRefused() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // A port nothing listens on, below the ephemeral range (an ephemeral one, bound and let
        // go, could be taken by another test's connection before the bind below).
        let port = try freePort()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let looped = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(to: address)
            .connect(to: address)
            .get()
        #expect(looped.localAddress == looped.remoteAddress, "the kernel connected the socket to itself")
        await #expect(throws: RPCError.self) { try await RPCClient.refuseSelfConnection(looped) }
        try await looped.closeFuture.get()
        #expect(!looped.isActive)

        // A connection to a listener is not touched.
        let listener = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let real = try await ClientBootstrap(group: group).connect(to: listener.localAddress!).get()
        try await RPCClient.refuseSelfConnection(real)
        #expect(real.isActive)
        try await real.close()
        try await listener.close()
    }
}
