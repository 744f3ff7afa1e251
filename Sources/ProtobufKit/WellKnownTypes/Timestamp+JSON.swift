// google.protobuf.Timestamp: JSON form is an RFC 3339 string in UTC, "1972-01-01T10:00:20.021Z".

extension Google.Protobuf.Timestamp {
    /// A timestamp from seconds and nanoseconds since the Unix epoch.
    public init(seconds: Int64, nanos: Int32 = 0) {
        self.init()
        self.seconds = seconds
        self.nanos = nanos
    }

    /// The RFC 3339 text of this timestamp, or nil if it is outside 0001-01-01...9999-12-31 or
    /// its nanos are out of range.
    public var rfc3339: String? {
        guard seconds >= CivilTime.minSeconds, seconds <= CivilTime.maxSeconds, nanos >= 0, nanos < 1_000_000_000 else { return nil }
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let date = CivilTime.date(fromDays: days)
        // Digits written into one small buffer: this runs for every timestamp in every JSON
        // answer, and building it from padded Strings cost a dozen allocations.
        return String(unsafeUninitializedCapacity: 30) { buffer in
            var position = 0
            func put(_ value: Int64, digits: Int) {
                var value = value
                for offset in stride(from: digits - 1, through: 0, by: -1) {
                    buffer[position + offset] = UInt8(48 + value % 10)
                    value /= 10
                }
                position += digits
            }
            func put(_ byte: Character) {
                buffer[position] = byte.asciiValue!
                position += 1
            }
            put(date.year, digits: 4); put("-"); put(date.month, digits: 2); put("-"); put(date.day, digits: 2)
            put("T"); put(secondOfDay / 3600, digits: 2); put(":"); put(secondOfDay / 60 % 60, digits: 2); put(":")
            put(secondOfDay % 60, digits: 2)
            // Fractions in groups of 3 digits, as many as needed (proto3 JSON's canonical form).
            if nanos != 0 {
                put(".")
                if nanos % 1_000_000 == 0 { put(Int64(nanos / 1_000_000), digits: 3) }
                else if nanos % 1_000 == 0 { put(Int64(nanos / 1_000), digits: 6) }
                else { put(Int64(nanos), digits: 9) }
            }
            put("Z")
            return position
        }
    }

    /// Parses RFC 3339 (`Z` or a `+hh:mm` offset; up to 9 fraction digits).
    public init?(rfc3339 text: String) {
        let bytes = Array(text.utf8)
        func number(_ start: Int, _ count: Int) -> Int64? {
            guard start + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for byte in bytes[start..<start + count] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            return value
        }
        guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t"),
              bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
              let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
              (1...12).contains(month), day >= 1, day <= CivilTime.daysInMonth(year: year, month: month),
              hour < 24, minute < 60, second < 60, year >= 1 else { return nil }
        var position = 19
        var nanos: Int64 = 0
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            var digits = 0
            while position < bytes.count, bytes[position] >= 48, bytes[position] <= 57 {
                guard digits < 9 else { return nil }
                nanos = nanos * 10 + Int64(bytes[position] - 48)
                digits += 1
                position += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<9 { nanos *= 10 }
        }
        guard position < bytes.count else { return nil }
        var offset: Int64 = 0
        switch bytes[position] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            position += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard let offsetHours = number(position + 1, 2), position + 3 < bytes.count, bytes[position + 3] == UInt8(ascii: ":"),
                  let offsetMinutes = number(position + 4, 2), offsetHours < 24, offsetMinutes < 60 else { return nil }
            offset = (offsetHours * 3600 + offsetMinutes * 60) * (bytes[position] == UInt8(ascii: "-") ? -1 : 1)
            position += 6
        default:
            return nil
        }
        guard position == bytes.count else { return nil }
        let seconds = CivilTime.days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second - offset
        guard seconds >= CivilTime.minSeconds, seconds <= CivilTime.maxSeconds else { return nil }
        self.init(seconds: seconds, nanos: Int32(nanos))
    }

    public func _writeJSON(to writer: inout JSONWriter) throws {
        guard let text = rfc3339 else {
            throw JSONEncodingError("Timestamp seconds=\(seconds) nanos=\(nanos) is outside 0001-01-01 to 9999-12-31 or not normalized")
        }
        writer.string(text)
    }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        guard scanner.peek() == UInt8(ascii: "\"") else {
            throw scanner.mismatch(expected: "an RFC 3339 timestamp string")
        }
        let text = try scanner.string()
        guard let timestamp = Self(rfc3339: text) else {
            throw JSONDecodingError("\"\(text)\" is not an RFC 3339 timestamp between 0001-01-01 and 9999-12-31")
        }
        self = timestamp
    }
}

/// A message that has no JSON form (a Timestamp out of range, an Any of an unregistered type).
public struct JSONEncodingError: Error, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
