import RPC

/// A mistake in how dronectl was called (a flag, the request document, the configuration),
/// found before anything is sent. Exits with `ExitStatus.usage`.
public struct UsageError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A failure that is neither a usage error nor a call's status (an unreadable file, a broken
/// pipe). Exits with `ExitStatus.failure`.
public struct ToolError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// dronectl's exit codes. Stable, documented in docs/dronectl.md and `dronectl --help`:
///
/// | code | meaning |
/// |---|---|
/// | 0 | the call ended with OK |
/// | 1 | dronectl itself failed (a file it could not read or write) |
/// | 2 | usage: a flag, the request, `-d` or the configuration is wrong; nothing was sent |
/// | 64 + n | the call ended with gRPC status n (65 CANCELLED ... 80 UNAUTHENTICATED) |
///
/// A call that could not reach its server is UNAVAILABLE (78), a call past `--timeout`
/// DEADLINE_EXCEEDED (68), Ctrl-C CANCELLED (65). Over HTTP the status is the one the gateway
/// put in its `google.rpc.Status` body, or the one its HTTP status maps to.
public enum ExitStatus {
    public static let ok: Int32 = 0
    public static let failure: Int32 = 1
    public static let usage: Int32 = 2
    /// 64 + the status code, as grpcurl does.
    public static func forStatus(_ code: RPCError.Code) -> Int32 {
        code == .ok ? 0 : 64 + Int32(clamping: code.rawValue)
    }
}
