import HTTP2

/// What the first header block of a response says about it: the HTTP status, whether it is a gRPC
/// response at all (content-type), and the message encoding. Read in one pass over the fields.
///
/// Between a client and a gRPC server there may be proxies and load balancers that answer on
/// their own: a 502 or 503 with an HTML page, a 401 from an authenticating proxy, a 404 from a
/// path router. gRPC's PROTOCOL-HTTP2 asks clients to expect that and to make up a status for
/// the caller from the HTTP status (doc/http-grpc-status-mapping.md), so that a proxy's 503 is
/// UNAVAILABLE (worth retrying) and not a decoding error from reading HTML as gRPC frames.
struct ResponseHead {
    /// `:status`, 0 when missing or not a number.
    var status = 0
    var contentType: String?
    var encoding: String?

    init(_ fields: [HeaderField]) {
        for field in fields {
            switch field.name {
            case ":status": status = Int(field.value) ?? 0
            case "content-type": contentType = field.value
            case "grpc-encoding": encoding = field.value
            default: break
            }
        }
    }

    /// Whether `value` names gRPC's media type: `application/grpc`, optionally followed by `+proto`
    /// (or another subtype) or by parameters.
    static func isGRPC(contentType value: String) -> Bool {
        if value == "application/grpc" { return true }  // nearly always: no lower-casing, no copies
        let lowered = value.lowercased()
        return lowered == "application/grpc" || lowered.hasPrefix("application/grpc+") || lowered.hasPrefix("application/grpc;")
    }

    /// The status the call ends with when this head is not that of a gRPC response: a `:status`
    /// other than 200 maps through gRPC's table; a 200 whose content-type is not gRPC's is
    /// UNKNOWN, as grpc-go reports it. nil for a gRPC response.
    var failure: RPCError? {
        let isGRPC = contentType.map(Self.isGRPC(contentType:)) ?? false
        if status == 200 && isGRPC { return nil }
        let what = "HTTP status \(status == 0 ? "(missing)" : String(status)), content-type \(contentType.map { "\"\($0)\"" } ?? "(missing)")"
        if status == 0 { return RPCError(.internal, "the server's response is malformed: \(what)") }
        if status != 200 {
            return RPCError(RPCError.Code.fromHTTPStatus(status), "the server's response is not gRPC: \(what)")
        }
        return RPCError(.unknown, "the server's response is not gRPC: \(what)")
    }
}
