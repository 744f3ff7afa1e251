// Feeds arbitrary bytes to the gateway's input path: the first line is "METHOD target" (path and
// query), the rest the body. Routing, percent-decoding, query typing and JSON transcoding must
// answer with a route, a TranscodingError or a 404/405 -- never crash or throw anything else.
import DroneDeliveryAPI
import FuzzDriver
import Gateway
import GRPCProtos
import ProtobufKit

let files = wellKnownFiles + grpcProtoFiles + droneDeliveryProtoFiles
let routes = try! RouteTable(files: files, services: Gateway.publicServices)
let transcoder = Transcoder(schema: Schema(files: files))

func decode<M: JSONMessage>(_ type: M.Type, _ json: JSONValue) throws { _ = try transcoder.decode(M.self, json) }

// Also exported under libFuzzer's name: in a debug build SwiftPM renames the executable's `main`,
// so the linker takes libFuzzer's own `main`, which calls this symbol.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: count))
    let newline = bytes.firstIndex(of: 0x0a) ?? bytes.count
    let line = String(decoding: bytes[..<newline], as: UTF8.self)
    let body = newline < bytes.count ? Array(bytes[(newline + 1)...]) : []
    let parts = line.split(separator: " ", maxSplits: 1)
    guard parts.count == 2 else { return 0 }
    let request = GatewayRequest(method: String(parts[0]), target: String(parts[1]), headers: [], body: body)
    let path = String(request.target.split(separator: "?", maxSplits: 1).first ?? "")
    guard case .found(let route, let variables) = routes.match(method: request.method, path: path) else { return 0 }
    do {
        let json = try transcoder.requestJSON(route: route, variables: variables, query: request.queryParameters, body: body)
        try decode(route.input, json)
    } catch is TranscodingError {
    } catch {
        fatalError("unexpected error type: \(error)")
    }
    return 0
}

runFuzzer { data, count in fuzzOne(data, count) }
