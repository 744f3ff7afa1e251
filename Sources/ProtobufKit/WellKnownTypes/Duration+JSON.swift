// google.protobuf.Duration: JSON form is seconds with up to 9 fraction digits and an "s":
// "1.000340012s", "-0.5s".

extension Google.Protobuf.Duration {
    /// The range the proto3 JSON mapping allows: about 10,000 years either way.
    static let maxSeconds: Int64 = 315_576_000_000

    public init(seconds: Int64, nanos: Int32 = 0) {
        self.init()
        self.seconds = seconds
        self.nanos = nanos
    }

    public func _writeJSON(to writer: inout JSONWriter) throws {
        guard abs(seconds) <= Self.maxSeconds, abs(nanos) < 1_000_000_000,
              seconds == 0 || nanos == 0 || (seconds < 0) == (nanos < 0) else {
            throw JSONEncodingError("Duration seconds=\(seconds) nanos=\(nanos) is out of range or has mixed signs")
        }
        let negative = seconds < 0 || nanos < 0
        writer.string((negative ? "-" : "") + String(abs(seconds)) + CivilTime.fraction(abs(nanos)) + "s")
    }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        let shown = scanner.describeValue()
        guard scanner.peek() == UInt8(ascii: "\""), case let text = try scanner.string(), text.hasSuffix("s") else {
            throw scanner.typeMismatch(expected: "a duration string like \"1.5s\"", got: shown)
        }
        var body = Substring(text.dropLast())
        let negative = body.hasPrefix("-")
        if negative { body = body.dropFirst() }
        let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit), let seconds = Int64(whole),
              seconds <= Self.maxSeconds else {
            throw JSONDecodingError("\"\(text)\" is not a duration within ±315576000000s")
        }
        var nanos: Int64 = 0
        if parts.count == 2 {
            let fraction = parts[1]
            guard !fraction.isEmpty, fraction.count <= 9, fraction.allSatisfy(\.isASCIIDigit) else {
                throw JSONDecodingError("\"\(text)\" has an invalid fraction of a second")
            }
            nanos = Int64(fraction)! * Int64([1, 100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1][fraction.count])
        }
        self.init(seconds: negative ? -seconds : seconds, nanos: Int32(negative ? -nanos : nanos))
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
