// Feeds arbitrary bytes to the binary decoder of several message shapes. Any outcome but a
// decoded message or a ProtobufDecodingError is a bug; a decoded message must re-encode and
// decode to itself.
import DroneDeliveryAPI
import ProtobufKit
import FuzzDriver

func check<M: Message>(_ type: M.Type, _ bytes: UnsafeRawBufferPointer) {
    do {
        let message = try M(decoding: bytes)
        let again = try M(serializedBytes: message.serializedBytes())
        if try again != message && again.serializedBytes() != message.serializedBytes() {
            fatalError("\(M.protoMessageName) changed across re-encoding")
        }
    } catch is ProtobufDecodingError {
        // Rejected with a reason: the expected outcome for most inputs.
    } catch {
        fatalError("unexpected error type: \(error)")
    }
}

// Also exported under libFuzzer's name: in a debug build SwiftPM renames the executable's `main`,
// so the linker takes libFuzzer's own `main`, which calls this symbol.
/// One input from libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    guard let data else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data, count: count)
    check(IngestionV1.RequestEnvelope.self, bytes)
    check(DeliveryV1.DeliveryTrackingEvent.self, bytes)
    check(Google.Protobuf.Struct.self, bytes)
    check(Google.Protobuf.AnyMessage.self, bytes)
    return 0
}

runFuzzer { data, count in fuzzOne(data, count) }
