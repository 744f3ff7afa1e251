/// Base64: standard alphabet with padding on output; standard or URL-safe, padded or not, on
/// input. Used by the proto3 JSON mapping (bytes fields) and by gRPC's `-bin` metadata.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [Int8] = {
        var table = [Int8](repeating: -1, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = Int8(index) }
        table[Int(UInt8(ascii: "-"))] = 62
        table[Int(UInt8(ascii: "_"))] = 63
        return table
    }()

    public static func encode(_ input: [UInt8], into output: inout [UInt8]) {
        output.reserveCapacity(output.count + (input.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= input.count {
            let triple = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
            output.append(alphabet[Int(triple >> 18 & 63)])
            output.append(alphabet[Int(triple >> 12 & 63)])
            output.append(alphabet[Int(triple >> 6 & 63)])
            output.append(alphabet[Int(triple & 63)])
            index += 3
        }
        let rest = input.count - index
        if rest > 0 {
            let b0 = UInt32(input[index])
            let b1 = rest > 1 ? UInt32(input[index + 1]) : 0
            let triple = b0 << 16 | b1 << 8
            output.append(alphabet[Int(triple >> 18 & 63)])
            output.append(alphabet[Int(triple >> 12 & 63)])
            output.append(rest > 1 ? alphabet[Int(triple >> 6 & 63)] : UInt8(ascii: "="))
            output.append(UInt8(ascii: "="))
        }
    }

    public static func encode(_ input: [UInt8]) -> String {
        var output: [UInt8] = []
        encode(input, into: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// Returns nil when `text` is not base64 in any accepted form.
    public static func decode(_ text: String) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(text.utf8.count * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        var padding = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: "=") { padding += 1; continue }
            guard padding == 0 else { return nil }  // data after padding
            let value = decodeTable[Int(byte)]
            guard value >= 0 else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // Leftover bits must be padding zeros, and at most two '=' may end the text.
        guard padding <= 2, bits < 6 else { return nil }
        return output
    }
}
