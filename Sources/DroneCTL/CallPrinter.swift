import ProtobufKit
import RPC

/// How a call ended.
public struct CallOutcome: Sendable {
    public var code: RPCError.Code
    public var message: String
    /// The server's trailing metadata (gRPC) or nothing (HTTP: its headers come first).
    public var trailers: [(name: String, value: String)]
    /// `google.rpc.Status` details, as JSON, when the server sent them.
    public var details: JSONValue?

    public init(code: RPCError.Code, message: String = "", trailers: [(name: String, value: String)] = [], details: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.trailers = trailers
        self.details = details
    }
}

/// Prints a call as it happens: messages on standard output as they arrive, in the chosen
/// format, and (with `-v`) the request, headers, trailers and timing on standard error.
/// The envelope format is written as it goes too, so a long stream is never held in memory.
///
/// `@unchecked Sendable`: a call's printer is used by one task at a time (the task reading the
/// responses, then the one that reports the end), never by two at once.
final class CallPrinter: @unchecked Sendable {
    let format: OutputFormat
    let verbose: Bool
    let method: MethodDescriptor
    let transport: TransportKind
    let server: String
    let started = ContinuousClock.now
    private var headersSeen = false
    private var envelopeOpen = false
    private var messageCount = 0
    private var firstMessageAt: Duration?
    private var headersAt: Duration?

    init(format: OutputFormat, verbose: Bool, method: MethodDescriptor, transport: TransportKind, server: String) {
        self.format = format
        self.verbose = verbose
        self.method = method
        self.transport = transport
        self.server = server
    }

    /// The request about to go out (`-v`).
    func request(line: String, headers: [(name: String, value: String)]) {
        guard verbose else { return }
        Terminal.error("> \(line)")
        for header in headers { Terminal.error("> \(header.name): \(Self.shown(header))") }
        Terminal.error(">")
    }

    /// Secrets stay off the terminal: an authorization value shows its scheme and a prefix.
    static func shown(_ header: (name: String, value: String)) -> String {
        guard header.name == "authorization" || header.name == "x-api-key" else { return header.value }
        let parts = header.value.split(separator: " ", maxSplits: 1).map(String.init)
        return parts.count == 2 ? parts[0] + " " + ProfileStore.redact(parts[1]) : ProfileStore.redact(header.value)
    }

    /// The response's headers (once, before any message).
    func headers(_ headers: [(name: String, value: String)], status: String? = nil) {
        guard !headersSeen else { return }
        headersSeen = true
        headersAt = ContinuousClock.now - started
        if verbose {
            if let status { Terminal.error("< \(status)") }
            for header in headers { Terminal.error("< \(header.name): \(header.value)") }
            Terminal.error("< (headers after \(DurationText.milliseconds(headersAt!)))")
        }
        if format == .envelope { openEnvelope(headers: headers) }
    }

    func openEnvelope(headers: [(name: String, value: String)]) {
        guard !envelopeOpen else { return }
        envelopeOpen = true
        var writer = JSONWriter()
        writer.beginObject()
        writer.mapKey("method"); writer.string(method.path)
        writer.mapKey("transport"); writer.string(transport.rawValue)
        writer.mapKey("server"); writer.string(server)
        writer.mapKey("headers"); writer.value(Self.metadataJSON(headers))
        writer.mapKey("messages")
        writer.beginArray()
        Terminal.write(writer.bytes)
    }

    /// One response message, as canonical JSON.
    func message(_ json: [UInt8]) {
        if firstMessageAt == nil { firstMessageAt = ContinuousClock.now - started }
        messageCount += 1
        switch format {
        case .json:
            Terminal.write(json + [UInt8(ascii: "\n")])
        case .text:
            let text = (try? JSONParser.parse(json)).map(JSONText.readable) ?? String(decoding: json, as: UTF8.self)
            Terminal.write((messageCount > 1 ? "\n" : "") + text + "\n")
        case .envelope:
            openEnvelope(headers: [])
            Terminal.write((messageCount > 1 ? [UInt8(ascii: ","), UInt8(ascii: "\n")] : [UInt8(ascii: "\n")]) + json)
        }
    }

    /// The end of the call; returns the exit code.
    func finish(_ outcome: CallOutcome) -> Int32 {
        let total = ContinuousClock.now - started
        if verbose {
            for trailer in outcome.trailers { Terminal.error("< (trailer) \(trailer.name): \(trailer.value)") }
            Terminal.error("< status: \(outcome.code)\(outcome.message.isEmpty ? "" : " (\(outcome.message))")")
            var timing = "* \(messageCount) message\(messageCount == 1 ? "" : "s")"
            if let firstMessageAt { timing += ", first after \(DurationText.milliseconds(firstMessageAt))" }
            timing += ", total \(DurationText.milliseconds(total))"
            Terminal.error(timing)
        }
        if format == .envelope {
            openEnvelope(headers: [])
            var writer = JSONWriter()
            writer.endArray()
            writer.mapKey("trailers"); writer.value(Self.metadataJSON(outcome.trailers))
            writer.mapKey("status")
            writer.beginObject()
            writer.mapKey("code"); writer.int32(Int32(outcome.code.rawValue))
            writer.mapKey("name"); writer.string(outcome.code.description)
            writer.mapKey("message"); writer.string(outcome.message)
            if let details = outcome.details { writer.mapKey("details"); writer.value(details) }
            writer.endObject()
            writer.endObject()
            Terminal.write((messageCount > 0 ? [UInt8(ascii: "\n")] : []) + writer.bytes + [UInt8(ascii: "\n")])
        }
        if outcome.code != .ok {
            Terminal.error("error: \(outcome.code)\(outcome.message.isEmpty ? "" : ": \(outcome.message)")")
            if format != .envelope, case .array(let details)? = outcome.details {
                for detail in details { Terminal.error("  detail: " + JSONText.compact(detail)) }
            }
        }
        return ExitStatus.forStatus(outcome.code)
    }

    /// Metadata as a JSON object of name -> [values], in arrival order.
    static func metadataJSON(_ entries: [(name: String, value: String)]) -> JSONValue {
        var members: [JSONMember] = []
        for entry in entries {
            if let index = members.firstIndex(where: { $0.key == entry.name }), case .array(var values) = members[index].value {
                values.append(.string(entry.value))
                members[index].value = .array(values)
            } else {
                members.append(JSONMember(entry.name, .array([.string(entry.value)])))
            }
        }
        return .object(members)
    }
}

extension Metadata {
    /// Entries as text (binary values in base64), for printing.
    var textEntries: [(name: String, value: String)] {
        entries.map { entry in
            switch entry.value {
            case .string(let text): return (entry.name, text)
            case .binary(let bytes): return (entry.name, Base64.encode(bytes))
            }
        }
    }
}

/// A status's typed details (google.rpc.BadRequest, ErrorInfo, ...) as JSON, for printing.
enum StatusDetails {
    static func json(_ details: [Google.Protobuf.AnyMessage]) -> JSONValue? {
        guard !details.isEmpty else { return nil }
        let options = JSONEncodingOptions.defaults { $0.typeRegistry = .wellKnownTypes }
        return .array(details.map { detail in
            if let bytes = try? detail.jsonUTF8Bytes(options: options), let value = try? JSONParser.parse(bytes) { return value }
            // A detail type this build does not know: its type and bytes.
            return .object([JSONMember("@type", .string(detail.typeUrl)), JSONMember("value", .string(Base64.encode(detail.value)))])
        })
    }
}
