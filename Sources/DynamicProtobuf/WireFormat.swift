// The protobuf binary wire format, for messages whose types are known only at run time
// (generated messages are encoded by protobuf-c; these have no C struct to fill).

/// Appends wire-format values to a byte array.
struct WireWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    mutating func tag(_ number: Int32, _ wireType: UInt8) { varint(UInt64(UInt32(bitPattern: number)) << 3 | UInt64(wireType)) }

    mutating func fixed32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    mutating func fixed64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }

    mutating func lengthDelimited(_ payload: [UInt8]) {
        varint(UInt64(payload.count))
        bytes += payload
    }

    static func zigzag32(_ value: Int32) -> UInt64 { UInt64(UInt32(bitPattern: (value << 1) ^ (value >> 31))) }
    static func zigzag64(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }
}

/// One field as read from the wire, before its type gives it a meaning.
enum WireValue {
    case varint(UInt64)
    case fixed64(UInt64)
    case fixed32(UInt32)
    case bytes(ArraySlice<UInt8>)
}

/// Reads wire-format fields from bytes, checking every length against what remains.
struct WireReader {
    let bytes: ArraySlice<UInt8>
    var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    var isAtEnd: Bool { position >= bytes.endIndex }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.endIndex else { throw DynamicCodecError("truncated varint") }
            let byte = bytes[position]
            position += 1
            if shift == 63 && byte > 1 { throw DynamicCodecError("varint longer than 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw DynamicCodecError("varint longer than 10 bytes") }
        }
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, bytes.endIndex - position >= count else {
            throw DynamicCodecError("length \(count) runs past the end (\(bytes.endIndex - position) bytes left)")
        }
        defer { position += count }
        return bytes[position..<position + count]
    }

    /// The next field: its number and value.
    mutating func field() throws -> (number: Int32, value: WireValue) {
        let key = try varint()
        let number = key >> 3
        guard number >= 1, number <= 536_870_911 else { throw DynamicCodecError("field number \(number) is out of range") }
        switch key & 7 {
        case 0: return (Int32(number), .varint(try varint()))
        case 1:
            let raw = try take(8)
            return (Int32(number), .fixed64(raw.reversed().reduce(0) { $0 << 8 | UInt64($1) }))
        case 2:
            let length = try varint()
            guard length <= UInt64(Int32.max) else { throw DynamicCodecError("length \(length) is too large") }
            return (Int32(number), .bytes(try take(Int(length))))
        case 5:
            let raw = try take(4)
            return (Int32(number), .fixed32(raw.reversed().reduce(0) { $0 << 8 | UInt32($1) }))
        default:
            throw DynamicCodecError("field \(number) has wire type \(key & 7), which proto3 does not use (groups are not supported)")
        }
    }
}
