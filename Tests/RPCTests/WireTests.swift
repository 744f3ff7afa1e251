import NIOCore
@testable import RPC
import ProtobufKit
import Testing

@Suite("gRPC wire details")
struct WireTests {
    @Test("grpc-timeout parses every unit", arguments: [
        ("1H", Duration.seconds(3600)), ("2M", .seconds(120)), ("3S", .seconds(3)), ("4m", .milliseconds(4)),
        ("5u", .microseconds(5)), ("6n", .nanoseconds(6)), ("99999999S", .seconds(99_999_999)),
    ])
    func timeoutUnits(text: String, expected: Duration) {
        #expect(GRPCTimeout.parse(text) == expected)
    }

    @Test("malformed grpc-timeout values are refused", arguments: ["", "S", "1", "1s", "123456789S", "-1S", "1.5S"])
    func malformedTimeouts(text: String) {
        #expect(GRPCTimeout.parse(text) == nil)
    }

    @Test("grpc-timeout formatting round-trips and never shortens the deadline")
    func timeoutFormat() {
        for duration: Duration in [.nanoseconds(1), .milliseconds(1500), .seconds(30), .seconds(3600 * 24 * 365)] {
            let text = GRPCTimeout.format(duration)
            #expect(text.count <= 9)
            #expect(GRPCTimeout.parse(text)! >= duration)
        }
    }

    @Test("grpc-message percent-encoding")
    func percentEncoding() {
        let message = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n 100%"
        let encoded = PercentEncoding.encode(message)
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7e })
        #expect(encoded.hasSuffix("100%25"))
        #expect(PercentEncoding.decode(encoded) == message)
        #expect(PercentEncoding.decode("bad %zz escape %4") == "bad %zz escape %4")
    }

    @Test("-bin metadata: padded out, padded and unpadded in")
    func binaryMetadata() {
        #expect(Base64.encode([0xab, 0xab, 0xab, 0x01]) == "q6urAQ==")
        #expect(Base64.decode("q6urAQ==") == [0xab, 0xab, 0xab, 0x01])
        #expect(Base64.decode("q6urAQ") == [0xab, 0xab, 0xab, 0x01])
        let metadata = Metadata(fields: [("x-trace-bin", "q6urAQ"), (":path", "/a/b"), ("content-type", "application/grpc"), ("key", "v")])
        #expect(metadata.binaryValues("x-trace-bin") == [[0xab, 0xab, 0xab, 0x01]])
        #expect(metadata["key"] == "v")
        #expect(metadata.entries.count == 2)
    }

    @Test("messages reassemble across DATA frames split at every boundary")
    func deframing() throws {
        let messages: [[UInt8]] = [[], [1, 2, 3], [UInt8](repeating: 9, count: 300)]
        var wire = ByteBuffer()
        for message in messages { wire.writeImmutableBuffer(try frameMessage(message, compression: nil, allocator: ByteBufferAllocator())) }
        for split in 0...wire.readableBytes {
            var deframer = MessageDeframer(maxMessageSize: 1024, compression: nil)
            var received: [[UInt8]] = []
            deframer.append(wire.getSlice(at: 0, length: split)!)
            while let message = try deframer.next() { received.append(Array(message.readableBytesView)) }
            deframer.append(wire.getSlice(at: split, length: wire.readableBytes - split)!)
            while let message = try deframer.next() { received.append(Array(message.readableBytesView)) }
            #expect(received == messages, "split at \(split)")
            #expect(!deframer.hasPartialMessage)
        }
    }

    @Test("a message over the limit is RESOURCE_EXHAUSTED before it arrives")
    func messageLimit() throws {
        var deframer = MessageDeframer(maxMessageSize: 10, compression: nil)
        var header = ByteBuffer()
        header.writeInteger(UInt8(0))
        header.writeInteger(UInt32(11))
        deframer.append(header)
        let error = try #require(throws: RPCError.self) { try deframer.next() }
        #expect(error.code == .resourceExhausted)
    }

    @Test("gzip round-trips, and a decompression bomb is refused")
    func gzip() throws {
        let message = [UInt8](repeating: 0, count: 100_000)
        let framed = try frameMessage(message, compression: .gzip, allocator: ByteBufferAllocator())
        #expect(framed.readableBytes < 1_000)
        var deframer = MessageDeframer(maxMessageSize: 200_000, compression: .gzip)
        deframer.append(framed)
        #expect(Array(try deframer.next()!.readableBytesView) == message)
        var small = MessageDeframer(maxMessageSize: 50_000, compression: .gzip)
        small.append(framed)
        #expect(throws: RPCError.self) { try small.next() }
    }
}
