import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How every process writes its logs: swift-log's text lines (the default, for people at a
/// terminal) or JSON lines (`FABRIKAM_LOG_FORMAT=json`, for log collectors), with the same fields
/// in every service, and the trace and span ids of the request being handled on every record
/// logged inside it (from `RequestTrace.current`).
public enum LogOutput {
    /// The variable that chooses the format: `text` (default) or `json`.
    public static let formatVariable = "FABRIKAM_LOG_FORMAT"

    /// Sets up swift-log for this process; call once, before the first `Logger` is made.
    /// Throws a `ConfigurationError` naming the variable for a format it does not know.
    public static func bootstrap(process: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let format = environment[formatVariable] ?? "text"
        switch format {
        case "json":
            LoggingSystem.bootstrap({ label, provider in
                JSONLogHandler(label: label, process: process, metadataProvider: provider, output: .standardError)
            }, metadataProvider: traceMetadata)
        case "text":
            LoggingSystem.bootstrap({ label, provider in
                StreamLogHandler.standardError(label: label, metadataProvider: provider)
            }, metadataProvider: traceMetadata)
        default:
            throw ConfigurationError("\(formatVariable)=\(format) is not a log format (text or json)")
        }
    }

    /// `trace_id` and `span_id` of the request the current task handles (W3C trace context).
    public static let traceMetadata = Logger.MetadataProvider {
        guard let trace = RequestTrace.current else { return [:] }
        let parts = trace.traceparent.split(separator: "-")
        guard parts.count == 4 else { return [:] }
        return ["trace_id": .string(String(parts[1])), "span_id": .string(String(parts[2]))]
    }
}

/// One JSON object per line: `time` (RFC 3339, UTC, milliseconds), `level`, `process`, `logger`,
/// `message`, then the record's metadata (the trace's ids among them) as string members, nested
/// metadata as JSON arrays and objects. Each line goes out in one `write`, so lines from several
/// threads never interleave.
public struct JSONLogHandler: LogHandler {
    /// Where the lines go.
    public enum Output: Sendable {
        case standardError
        /// Collected in memory (tests).
        case memory(LogLines)
    }

    /// Lines collected in memory, without their newline.
    public final class LogLines: Sendable {
        let lines = Mutex<[String]>([])
        public init() {}
        public var all: [String] { lines.withLock { $0 } }
    }

    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let process: String
    let output: Output

    public init(label: String, process: String, metadataProvider: Logger.MetadataProvider? = nil, output: Output) {
        self.label = label
        self.process = process
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level, message = event.message, explicit = event.metadata
        // Later sources win: the handler's own, then the task's (trace), then the call's.
        var merged = self.metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let explicit { merged.merge(explicit) { $1 } }
        var text = "{\"time\":\"\(Self.timestamp())\",\"level\":\"\(level.rawValue)\",\"process\":"
        Self.appendString(process, to: &text)
        text += ",\"logger\":"
        Self.appendString(label, to: &text)
        text += ",\"message\":"
        Self.appendString(message.description, to: &text)
        let reserved: Set<String> = ["time", "level", "process", "logger", "message"]
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            // A metadata key never replaces a fixed field: it is kept under a prefixed name.
            text += ","
            Self.appendString(reserved.contains(key) ? "meta.\(key)" : key, to: &text)
            text += ":"
            Self.append(value, to: &text)
        }
        text += "}\n"
        switch output {
        case .standardError:
            text.withCString { pointer in _ = Glibc.write(2, pointer, strlen(pointer)) }
        case .memory(let lines):
            lines.lines.withLock { $0.append(String(text.dropLast())) }
        }
    }

    static func append(_ value: Logger.Metadata.Value, to text: inout String) {
        switch value {
        case .string(let string): appendString(string, to: &text)
        case .stringConvertible(let convertible): appendString(convertible.description, to: &text)
        case .array(let values):
            text += "["
            for (index, element) in values.enumerated() {
                if index > 0 { text += "," }
                append(element, to: &text)
            }
            text += "]"
        case .dictionary(let members):
            text += "{"
            for (index, (key, element)) in members.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { text += "," }
                appendString(key, to: &text)
                text += ":"
                append(element, to: &text)
            }
            text += "}"
        }
    }

    /// A JSON string (RFC 8259 section 7): quote, backslash and control characters escaped.
    static func appendString(_ string: String, to text: inout String) {
        text += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }

    /// Now as `2026-12-03T12:00:00.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let milliseconds = Int(now.tv_nsec / 1_000_000)
        let millisText = milliseconds < 10 ? "00\(milliseconds)" : milliseconds < 100 ? "0\(milliseconds)" : "\(milliseconds)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(millisText)Z"
    }
}
