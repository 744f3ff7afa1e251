import ProtobufKit

/// The outcome of a call that did not succeed: a gRPC status code, a message, metadata, and
/// typed details.
///
/// Handlers throw it to end a call with that status; clients receive it when a call fails.
/// Any other error a handler throws reaches the client as `UNKNOWN` without its description, so
/// internal details do not leak. Details (google.rpc.BadRequest, ErrorInfo, RetryInfo, ...) travel
/// in the `grpc-status-details-bin` trailer as a google.rpc.Status, as every gRPC implementation
/// reads them (RPCError+Details.swift).
public struct RPCError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A gRPC status code (doc/statuscodes.md of the gRPC project). A struct with static members,
    /// so new codes can be represented without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        public static let ok = Code(rawValue: 0)
        public static let cancelled = Code(rawValue: 1)
        public static let unknown = Code(rawValue: 2)
        public static let invalidArgument = Code(rawValue: 3)
        public static let deadlineExceeded = Code(rawValue: 4)
        public static let notFound = Code(rawValue: 5)
        public static let alreadyExists = Code(rawValue: 6)
        public static let permissionDenied = Code(rawValue: 7)
        public static let resourceExhausted = Code(rawValue: 8)
        public static let failedPrecondition = Code(rawValue: 9)
        public static let aborted = Code(rawValue: 10)
        public static let outOfRange = Code(rawValue: 11)
        public static let unimplemented = Code(rawValue: 12)
        public static let `internal` = Code(rawValue: 13)
        public static let unavailable = Code(rawValue: 14)
        public static let dataLoss = Code(rawValue: 15)
        public static let unauthenticated = Code(rawValue: 16)

        static let names = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                            "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                            "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                            "UNAUTHENTICATED"]

        public var description: String { Self.names.indices.contains(rawValue) ? Self.names[rawValue] : "CODE_\(rawValue)" }

        /// The code a client reports when a response carries HTTP status `status` and no
        /// grpc-status (doc/http-grpc-status-mapping.md).
        public static func fromHTTPStatus(_ status: Int) -> Code {
            switch status {
            case 400: return .internal
            case 401: return .unauthenticated
            case 403: return .permissionDenied
            case 404: return .unimplemented
            case 429, 502, 503, 504: return .unavailable
            default: return .unknown
            }
        }

        /// The code for a stream reset with HTTP/2 error `errorCode` (PROTOCOL-HTTP2, "Errors").
        public static func fromHTTP2ErrorCode(_ errorCode: UInt32) -> Code {
            switch errorCode {
            case 0x0, 0x1, 0x2, 0x3, 0x4, 0x6, 0x9, 0xc: return .internal  // incl. NO_ERROR before status
            case 0x7: return .unavailable          // REFUSED_STREAM: safe to retry
            case 0x8: return .cancelled            // CANCEL
            case 0xb: return .resourceExhausted    // ENHANCE_YOUR_CALM
            case 0xd: return .permissionDenied     // INADEQUATE_SECURITY
            default: return .unknown
            }
        }
    }

    public var code: Code
    public var message: String
    /// Trailing metadata sent with the status.
    public var metadata: Metadata
    /// Typed details, each a message packed into google.protobuf.Any (google.rpc.Status.details).
    /// Add them with `addDetail(_:)` or `addFieldViolation(_:_:)`, read them with `details(_:)`.
    public var details: [Google.Protobuf.AnyMessage]

    /// Where the error came from, for retry decisions; not part of the status (equality and
    /// hashing ignore it, and it never travels on the wire).
    var origin = Origin.peer

    enum Origin: Sendable {
        /// From the server, or from the connection to it: the request may have been processed.
        case peer
        /// Made by this client before the request could leave (invalid metadata, a request over
        /// the size limit, a connection refused without trying): the same call would fail the
        /// same way, so it is never retried.
        case local
        /// The server did not process the request (REFUSED_STREAM, a stream above a GOAWAY's last
        /// stream id, a connection that stopped taking calls before the request went out): safe
        /// to send again, whatever the method.
        case unprocessed
    }

    public init(_ code: Code, _ message: String = "", metadata: Metadata = Metadata(), details: [Google.Protobuf.AnyMessage] = []) {
        self.code = code
        self.message = message
        self.metadata = metadata
        self.details = details
    }

    init(_ code: Code, _ message: String, origin: Origin) {
        self.init(code, message)
        self.origin = origin
    }

    /// Whether this client made the error itself, without the server (invalid outgoing metadata,
    /// a request over the message size limit or that cannot be encoded, a connection attempt
    /// skipped while the address is backing off or refused because it connected to itself).
    /// Repeating the call would fail the same way: `RetryInterceptor` never retries it.
    public var isLocal: Bool { origin == .local }

    /// The same error, marked as made by this client (see `isLocal`).
    func markedLocal() -> RPCError {
        var error = self
        error.origin = .local
        return error
    }

    public var description: String { message.isEmpty ? "\(code)" : "\(code): \(message)" }

    public static func == (lhs: RPCError, rhs: RPCError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.metadata == rhs.metadata && lhs.details == rhs.details
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
        hasher.combine(metadata)
        hasher.combine(details)
    }
}
