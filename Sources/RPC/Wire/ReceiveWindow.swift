/// When to acknowledge received body bytes to the peer (HTTP/2 manual flow control), for one
/// stream, on either end.
///
/// Bytes are acknowledged as they arrive while the reader keeps up, so a message larger than the
/// window can complete. Once `unreadLimit` bytes of complete messages wait unread, nothing more is
/// acknowledged until the reader catches up: a slow reader stops its peer, and memory stays bounded.
struct ReceiveWindow {
    static let unreadLimit = 64 * 1024

    /// Received bytes not yet acknowledged.
    private(set) var unacknowledged = 0
    /// Bytes of complete messages handed to the reader but not yet read.
    private(set) var unread = 0

    mutating func received(_ count: Int) { unacknowledged += count }
    mutating func delivered(_ wireBytes: Int) { unread += wireBytes }
    mutating func read(_ wireBytes: Int) { unread -= wireBytes }

    /// Received bytes never acknowledged, for when the stream closes: they still count against
    /// the connection's window, which would otherwise shrink for good (and, once it lost half,
    /// stall every stream on the connection).
    var unacknowledgedAtClose: Int { unacknowledged }

    /// Bytes to acknowledge now (and forget), or 0.
    mutating func takeAcknowledgement() -> Int {
        guard unacknowledged > 0, unread < Self.unreadLimit else { return 0 }
        defer { unacknowledged = 0 }
        return unacknowledged
    }
}
