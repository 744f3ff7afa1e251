import NIOCore

extension RPCClient {
    /// A connection whose local and remote addresses are the same: the client asked for a port
    /// where nothing listened yet, and the kernel chose that very port as the connection's
    /// local port (possible inside the ephemeral range), so TCP's simultaneous open connected the
    /// socket to itself. It would hold the port the server wants. Closed at once and failed, as
    /// Go's net package does (`selfConnect` in net/tcpsock_posix.go), so the caller retries.
    static func refuseSelfConnection(_ channel: any Channel) async throws {
        guard let local = channel.localAddress, let remote = channel.remoteAddress, local == remote else { return }
        try? await channel.close()
        throw RPCError(.unavailable, "the connection to \(remote) connected to itself (nothing listened there yet); closed it")
    }
}
