// protoc-gen-swiftpbc: protoc plugin that emits Swift over protobuf-c.
//
// protoc runs it with a serialized CodeGeneratorRequest on standard input and reads a
// CodeGeneratorResponse from standard output. All the work is in ProtobufCodeGen; this is the
// thin executable around it (the layout of grpc-swift-protobuf's plugin).
//
//   protoc -I proto --plugin=protoc-gen-swiftpbc=.build/debug/protoc-gen-swiftpbc \
//          --swiftpbc_out=Module=DroneDeliveryAPI,CModule=CDroneDeliveryAPI:Sources/DroneDeliveryAPI/Generated ...

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ProtobufCodeGen

func readStandardInput() -> [UInt8] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        bytes += chunk[0..<count]
    }
    return bytes
}

func writeStandardOutput(_ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if written <= 0 { exit(1) }
        offset += written
    }
}

let response: [UInt8]
do {
    let request = try CodeGeneratorRequest(serialized: readStandardInput())
    // `CLI` in the options asks for the `dronectl` commands instead of Swift types.
    let files = CLIGeneratorOptions.isCLIRequest(request.parameter)
        ? try CLIGenerator(request: request).generate()
        : try SwiftGenerator(request: request).generate()
    response = serializeCodeGeneratorResponse(files: files, error: nil)
} catch {
    // protoc prints the error with the plugin's name and fails the run.
    response = serializeCodeGeneratorResponse(files: [], error: "\(error)")
}
writeStandardOutput(response)
