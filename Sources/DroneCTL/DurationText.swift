/// Durations as people write them on command lines: `1.5s`, `300ms`, `2m`, `1h30m`, `250us`.
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text.trimmingWhitespace)
        guard !rest.isEmpty else { return nil }
        var total = Duration.zero
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            let nanoseconds: Double
            switch unit {
            case "h": nanoseconds = 3_600e9
            case "m": nanoseconds = 60e9
            case "s": nanoseconds = 1e9
            case "ms": nanoseconds = 1e6
            case "us", "µs": nanoseconds = 1e3
            case "ns": nanoseconds = 1
            default: return nil
            }
            let product = value * nanoseconds
            guard product.isFinite, product < 1e18 else { return nil }
            total += .nanoseconds(Int64(product))
        }
        return total
    }

    /// Parses a flag's value or fails naming the flag.
    static func parse(_ text: String, flag: String) throws -> Duration {
        guard let duration = parse(text), duration > .zero else {
            throw UsageError("\(flag): expected a duration such as 1.5s, 300ms or 2m, got \"\(text)\"")
        }
        return duration
    }

    /// `1.234 ms`, for timings on standard error.
    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let value = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        let rounded = (value * 1000).rounded() / 1000
        return "\(rounded) ms"
    }
}

extension String {
    var trimmingWhitespace: String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}
