/// Which new traces are sampled: OpenTelemetry's `ParentBased(TraceIdRatioBased(ratio))`.
///
/// Only a trace's root decides: a trace that arrives (a `traceparent` from a client, a queue
/// message's context) keeps the decision in its flags, and every process honours it, so a trace
/// is recorded whole or not at all. The root's decision depends on its trace id alone (the last
/// 56 bits, the part W3C trace context level 2 asks to be random, below `ratio` x 2^56), so
/// every process with the same ratio would decide the same for the same id.
///
/// The ratio is `FABRIKAM_TRACE_SAMPLE_RATIO` (0 to 1), or else OpenTelemetry's own variables
/// (`OTEL_TRACES_SAMPLER=parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG`, or
/// `parentbased_always_on`/`_off`), which operators of OpenTelemetry already set. The default is
/// 1, every trace, as OpenTelemetry's SDKs default to `parentbased_always_on`: at this system's
/// volume every trace is affordable, a collector doing tail sampling needs every span to decide,
/// and an operator who must shed volume lowers the ratio at the edge (the gateway and the
/// producers of new traces) knowing what it costs, rather than finding traces missing.
///
/// ```swift
/// TraceSampler(ratio: 0.1).samples(traceID: "4bf92f3577b34da6a3ce929d0e0e4736")
/// ```
public struct TraceSampler: Sendable, Equatable {
    /// The variable that sets the ratio.
    public static let ratioVariable = "FABRIKAM_TRACE_SAMPLE_RATIO"

    /// The share of new traces sampled, 0 to 1.
    public let ratio: Double
    /// Trace ids whose last 56 bits are below this are sampled (2^56 for a ratio of 1).
    let threshold: UInt64

    /// - Parameter ratio: clamped to 0...1.
    public init(ratio: Double) {
        let ratio = ratio.isNaN ? 1 : min(max(ratio, 0), 1)
        self.ratio = ratio
        threshold = ratio >= 1 ? 1 << 56 : UInt64(ratio * Double(UInt64(1) << 56))
    }

    /// From `FABRIKAM_TRACE_SAMPLE_RATIO`, else OpenTelemetry's `OTEL_TRACES_SAMPLER(_ARG)`;
    /// a value it cannot use throws a `ConfigurationError` naming the variable.
    public init(environment: [String: String]) throws {
        func ratio(_ text: String, _ variable: String) throws -> Double {
            guard let value = Double(text), value >= 0, value <= 1 else {
                throw ConfigurationError("\(variable) must be a number from 0 to 1, got \"\(text)\"")
            }
            return value
        }
        if let text = environment[Self.ratioVariable] {
            self.init(ratio: try ratio(text, Self.ratioVariable))
            return
        }
        switch environment["OTEL_TRACES_SAMPLER"] {
        case nil, "parentbased_always_on", "always_on":
            self.init(ratio: 1)
        case "parentbased_always_off", "always_off":
            self.init(ratio: 0)
        case "parentbased_traceidratio", "traceidratio":
            // The specification's default argument is 1.
            self.init(ratio: try environment["OTEL_TRACES_SAMPLER_ARG"].map { try ratio($0, "OTEL_TRACES_SAMPLER_ARG") } ?? 1)
        case let other?:
            throw ConfigurationError("OTEL_TRACES_SAMPLER=\(other) is not supported here (parentbased_traceidratio, parentbased_always_on, "
                                     + "parentbased_always_off); or set \(Self.ratioVariable)")
        }
    }

    /// Whether a new trace with this id (32 hex digits) is sampled. An id that is not hex is.
    public func samples(traceID: String) -> Bool {
        var traceID = traceID
        return traceID.withUTF8 { samples(traceIDDigits: $0) }
    }

    /// The same decision on the id's hex digits as bytes. On a buffer, not any collection: it
    /// runs for every new trace, and the generic `suffix` walk cost some 90 ns a call.
    func samples(traceIDDigits digits: UnsafeBufferPointer<UInt8>) -> Bool {
        if threshold >= 1 << 56 { return true }
        if threshold == 0 { return false }
        guard digits.count == 32 else { return true }
        var value: UInt64 = 0
        for index in 18..<32 {
            guard let nibble = hexValue(digits[index]) else { return true }
            value = value << 4 | UInt64(nibble)
        }
        return value < threshold
    }
}
