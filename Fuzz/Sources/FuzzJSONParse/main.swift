// Feeds arbitrary bytes to the JSON parser and the proto3 JSON mapping. Any outcome but a
// message or a JSONDecodingError is a bug; a decoded message must print JSON that parses back.
import DroneDeliveryAPI
import ProtobufKit
import FuzzDriver

func check<M: Message>(_ type: M.Type, _ bytes: [UInt8]) {
    do {
        let message = try M(jsonUTF8Bytes: bytes)
        do {
            let printed = try message.jsonUTF8Bytes()
            _ = try M(jsonUTF8Bytes: printed)
        } catch is JSONEncodingError {
            // Some decodable values have no JSON form (for example a Value holding NaN).
        }
    } catch is JSONDecodingError {
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
    let bytes = Array(UnsafeBufferPointer(start: data, count: count))
    check(IngestionV1.RequestEnvelope.self, bytes)
    check(Google.Protobuf.Value.self, bytes)
    check(Google.Protobuf.Timestamp.self, bytes)
    check(Google.Protobuf.Duration.self, bytes)
    return 0
}

runFuzzer { data, count in fuzzOne(data, count) }
