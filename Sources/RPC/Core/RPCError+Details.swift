import ProtobufKit

/// Rich errors: google.rpc.Status with typed details, sent in the `grpc-status-details-bin`
/// trailer (base64 of the serialized Status) beside grpc-status and grpc-message.
///
/// ```swift
/// var error = RPCError(.invalidArgument, "the delivery request is invalid")
/// try error.addFieldViolation("package_info.weight", "must be more than 0")
/// try error.addFieldViolation("dropoff_location", "is required")
/// var retry = Google.Rpc.RetryInfo()
/// retry.retryDelay = Google.Protobuf.Duration(seconds: 2)
/// try error.addDetail(retry)
/// throw error
/// ```
///
/// A client reads them back with `error.details(Google.Rpc.BadRequest.self)`; the gateway writes
/// them into its JSON error body as `details` with `@type`.
extension RPCError {
    /// Name of the trailer that carries the details.
    static let detailsTrailer = "grpc-status-details-bin"

    /// Appends `detail` packed into google.protobuf.Any (`type.googleapis.com/<full name>`).
    /// - Throws: `ProtobufEncodingError` when the detail cannot be encoded (U+0000 in a string).
    public mutating func addDetail<Detail: Message>(_ detail: Detail) throws {
        details.append(try Google.Protobuf.AnyMessage(packing: detail))
    }

    /// The details of type `Detail`, in order; details of other types are skipped.
    /// - Throws: `ProtobufDecodingError` when a detail of that type does not decode.
    public func details<Detail: Message>(_ type: Detail.Type) throws -> [Detail] {
        try details.filter { $0.isA(Detail.self) }.map { try $0.unpack(as: Detail.self) }
    }

    /// The first detail of type `Detail`, if there is one.
    public func detail<Detail: Message>(_ type: Detail.Type) throws -> Detail? {
        try details.first { $0.isA(Detail.self) }.map { try $0.unpack(as: Detail.self) }
    }

    /// Adds a field violation to the error's google.rpc.BadRequest, created on first use, so a
    /// validation can report every invalid field of a request in one error.
    /// - Parameters:
    ///   - field: the field's path (`package_info.weight`, `items[2].name`).
    ///   - description: why its value is invalid.
    ///   - reason: an optional UPPER_SNAKE_CASE reason (`VALUE_OUT_OF_RANGE`).
    public mutating func addFieldViolation(_ field: String, _ description: String, reason: String = "") throws {
        var violation = Google.Rpc.BadRequest.FieldViolation()
        violation.field = field
        violation.description_ = description
        violation.reason = reason
        if let index = details.firstIndex(where: { $0.isA(Google.Rpc.BadRequest.self) }) {
            var badRequest = try details[index].unpack(as: Google.Rpc.BadRequest.self)
            badRequest.fieldViolations.append(violation)
            details[index] = try Google.Protobuf.AnyMessage(packing: badRequest)
        } else {
            var badRequest = Google.Rpc.BadRequest()
            badRequest.fieldViolations = [violation]
            try addDetail(badRequest)
        }
    }

    /// The error as google.rpc.Status: its code, message and details.
    public var status: Google.Rpc.Status {
        var status = Google.Rpc.Status()
        status.code = Int32(truncatingIfNeeded: code.rawValue)
        status.message = message
        status.details = details
        return status
    }

    /// The error a google.rpc.Status describes.
    public init(status: Google.Rpc.Status, metadata: Metadata = Metadata()) {
        self.init(Code(rawValue: Int(status.code)), status.message, metadata: metadata, details: status.details)
    }

    /// The value of the `grpc-status-details-bin` trailer (before base64): the Status built from
    /// this error, so its code and message always agree with grpc-status and grpc-message. Nil
    /// when there are no details (the trailer is then left out, as gRPC does).
    var statusDetailsTrailer: [UInt8]? {
        if details.isEmpty { return nil }
        if let bytes = try? status.serializedBytes() { return bytes }
        // Only a U+0000 in the message can fail here (the details are bytes already): the
        // Status then carries the message with U+FFFD in its place; grpc-message has it intact.
        var status = self.status
        status.message = String(status.message.unicodeScalars.map { $0 == "\0" ? "\u{FFFD}" : Character($0) })
        return try? status.serializedBytes()
    }

    /// Reads the details from a received `grpc-status-details-bin` value (base64). gRPC requires
    /// the Status's code to be the call's grpc-status; a trailer that disagrees, or does not
    /// decode, is not taken as details, and the message says so rather than dropping it silently.
    mutating func readDetails(trailer value: String) {
        guard let bytes = Base64.decode(value) else {
            message += " (grpc-status-details-bin ignored: not base64)"
            return
        }
        do {
            let received = try Google.Rpc.Status(serializedBytes: bytes)
            guard Int(received.code) == code.rawValue else {
                message += " (grpc-status-details-bin ignored: its code \(received.code) is not grpc-status \(code.rawValue))"
                return
            }
            details = received.details
        } catch {
            message += " (grpc-status-details-bin ignored: \(error))"
        }
    }
}

// MARK: - Field rules

extension RPCError {
    /// INVALID_ARGUMENT for a message that breaks its field rules (`buf.validate`), with a
    /// google.rpc.BadRequest holding one FieldViolation per broken rule: the field's path
    /// (`pickup_location.latitude`, `items[2]`; empty for a rule on the whole message) and
    /// protovalidate's description (`must be greater than or equal to -90 and ...`).
    public init(fieldRuleViolations violations: [ValidationViolation], in messageName: String) {
        self.init(.invalidArgument, "invalid \(messageName): " + violations.map(\.description).joined(separator: "; "))
        var badRequest = Google.Rpc.BadRequest()
        badRequest.fieldViolations = violations.map { violation in
            var field = Google.Rpc.BadRequest.FieldViolation()
            field.field = violation.field
            field.description_ = violation.message
            return field
        }
        // Paths and protovalidate's messages hold no U+0000, so packing cannot fail; if it
        // did, the message above still names every violation.
        try? addDetail(badRequest)
    }

    /// Throws INVALID_ARGUMENT (see `init(fieldRuleViolations:in:)`) when `message` breaks a rule.
    public static func checkFieldRules<M: Message>(_ message: M) throws {
        let violations = message.validationViolations()
        if !violations.isEmpty { throw RPCError(fieldRuleViolations: violations, in: M.protoMessageName) }
    }
}
