internal import CZlib
import NIOCore

/// Message compression named by `grpc-encoding`. Only gzip (and identity, meaning none) is
/// supported; `grpc-accept-encoding` advertises exactly that.
struct Compression: Sendable, Hashable {
    let name: String

    static let gzip = Compression(name: "gzip")
    /// What this implementation accepts.
    static let acceptEncoding = "identity,gzip"

    /// Whether a `grpc-accept-encoding` value (a comma-separated list) names gzip: only then may
    /// a server compress its responses (gRPC's doc/compression.md).
    static func acceptsGzip(_ acceptEncoding: String) -> Bool {
        acceptEncoding.split(separator: ",").contains { token in
            token.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.elementsEqual("gzip".reversed())
        }
    }

    /// The compression for a `grpc-encoding` value; nil for identity; throws when unsupported.
    static func named(_ name: String?) throws -> Compression? {
        switch name {
        case nil, "identity": return nil
        case "gzip": return .gzip
        case let other?: throw RPCError(.unimplemented, "grpc-encoding \(other) is not supported (supported: \(acceptEncoding))")
        }
    }

    func compress(_ input: ByteBuffer) throws -> ByteBuffer {
        var stream = z_stream()
        guard CZlib_deflateInitGzip(&stream) == Z_OK else { throw RPCError(.internal, "gzip: deflateInit failed") }
        defer { deflateEnd(&stream) }
        var source = Array(input.readableBytesView)
        let bound = Int(deflateBound(&stream, UInt(source.count))) + 32
        var output = [UInt8](repeating: 0, count: bound)
        let produced: Int = try source.withUnsafeMutableBufferPointer { src in
            try output.withUnsafeMutableBufferPointer { dst in
                stream.next_in = src.baseAddress
                stream.avail_in = UInt32(src.count)
                stream.next_out = dst.baseAddress
                stream.avail_out = UInt32(dst.count)
                guard deflate(&stream, Z_FINISH) == Z_STREAM_END else { throw RPCError(.internal, "gzip: deflate failed") }
                return dst.count - Int(stream.avail_out)
            }
        }
        var result = ByteBuffer()
        result.writeBytes(output[0..<produced])
        return result
    }

    /// Inflates, refusing to produce more than `limit` bytes (a compression bomb is
    /// RESOURCE_EXHAUSTED, not an out-of-memory).
    func decompress(_ input: ByteBuffer, limit: Int) throws -> ByteBuffer {
        var stream = z_stream()
        guard CZlib_inflateInitGzip(&stream) == Z_OK else { throw RPCError(.internal, "gzip: inflateInit failed") }
        defer { inflateEnd(&stream) }
        var source = Array(input.readableBytesView)
        var result = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        try source.withUnsafeMutableBufferPointer { src in
            stream.next_in = src.baseAddress
            stream.avail_in = UInt32(src.count)
            while true {
                let status = chunk.withUnsafeMutableBufferPointer { dst -> Int32 in
                    stream.next_out = dst.baseAddress
                    stream.avail_out = UInt32(dst.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                result.writeBytes(chunk[0..<produced])
                if result.readableBytes > limit {
                    throw RPCError(.resourceExhausted, "decompressed message is over the limit of \(limit) bytes")
                }
                if status == Z_STREAM_END { return }
                guard status == Z_OK else { throw RPCError(.internal, "gzip: the compressed message is corrupt") }
                if stream.avail_in == 0 && produced == 0 { throw RPCError(.internal, "gzip: the compressed message is truncated") }
            }
        }
        return result
    }
}

/// gzip for callers outside the RPC wire (the gateway compresses HTTP responses with it).
public enum Gzip {
    public static func compress(_ bytes: [UInt8]) throws -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeBytes(bytes)
        return Array(try Compression.gzip.compress(buffer).readableBytesView)
    }

    /// Inflates at most `limit` bytes (more is an error, not an out-of-memory).
    public static func decompress(_ bytes: [UInt8], limit: Int) throws -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeBytes(bytes)
        return Array(try Compression.gzip.decompress(buffer, limit: limit).readableBytesView)
    }
}
