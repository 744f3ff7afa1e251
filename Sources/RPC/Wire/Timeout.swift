/// `grpc-timeout`: at most 8 digits and a unit (H hours, M minutes, S seconds, m milliseconds,
/// u microseconds, n nanoseconds), as PROTOCOL-HTTP2 specifies.
enum GRPCTimeout {
    /// Parses a header value; nil when malformed.
    static func parse(_ value: String) -> Duration? {
        // On the bytes: every call with a deadline parses one (Character checks were a cost).
        let bytes = value.utf8
        guard let unit = bytes.last, bytes.count >= 2, bytes.count <= 9 else { return nil }
        var amount: Int64 = 0
        for byte in bytes.dropLast() {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            amount = amount * 10 + Int64(byte - 0x30)
        }
        switch unit {
        case UInt8(ascii: "H"): return .seconds(amount * 3600)
        case UInt8(ascii: "M"): return .seconds(amount * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    /// The header value for `duration`, using the finest unit that fits in 8 digits.
    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = max(0, seconds) * 1_000_000_000 + max(0, attoseconds) / 1_000_000_000
        let units: [(Int64, Character)] = [(1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"),
                                           (60_000_000_000, "M"), (3_600_000_000_000, "H")]
        for (scale, unit) in units {
            // Round up so the server's deadline is never earlier than the client's.
            let amount = (nanoseconds + scale - 1) / scale
            if amount < 100_000_000 { return "\(amount)\(unit)" }
        }
        return "99999999H"
    }
}

/// `grpc-message`: percent-encoded UTF-8 (PROTOCOL-HTTP2: bytes outside 0x20...0x7E, and '%').
enum PercentEncoding {
    /// Printable ASCII but `%` goes as it is, the rest as `%XX`; so does a space at either end,
    /// which an HTTP/2 field value may not have (nghttp2 resets the stream that sends one).
    static func encode(_ text: String) -> String {
        var out = ""
        let last = text.utf8.count - 1
        for (index, byte) in text.utf8.enumerated() {
            let edgeSpace = byte == UInt8(ascii: " ") && (index == 0 || index == last)
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") && !edgeSpace {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }

    /// Decodes leniently: a malformed escape is kept as it is, as the spec asks.
    static func decode(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
               let value = UInt8(String(decoding: bytes[index + 1...index + 2], as: UTF8.self), radix: 16) {
                out.append(value)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
