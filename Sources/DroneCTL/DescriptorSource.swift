#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import DynamicProtobuf
import RPC

/// Where `dronectl list`, `describe` and `call` learn a server's types: its reflection service,
/// or, when reflection is off, protoset files or .proto files (compiled with protoc).
public struct DescriptorSourceFlags: ParsableArguments, Sendable {
    @Option(name: .customLong("protoset"), parsing: .singleValue,
            help: ArgumentHelp("A FileDescriptorSet (protoc --include_imports --descriptor_set_out) to use instead of reflection (repeatable).", valueName: "file"),
            completion: .file())
    public var protoset: [String] = []

    @Option(name: .customLong("proto"), parsing: .singleValue,
            help: ArgumentHelp(".proto file to use instead of reflection, compiled with protoc (repeatable).", valueName: "file"),
            completion: .file(extensions: ["proto"]))
    public var proto: [String] = []

    @Option(name: [.customShort("I"), .customLong("import-path")], parsing: .singleValue,
            help: ArgumentHelp("Where --proto files and their imports are found (repeatable; default: the current directory).", valueName: "dir"),
            completion: .directory)
    public var importPath: [String] = []

    public init() {}

    /// Whether the descriptors come from files rather than the server.
    var usesFiles: Bool { !protoset.isEmpty || !proto.isEmpty }

    /// The pool of the files given.
    func filePool() throws -> DescriptorPool {
        var pool = DescriptorPool()
        do {
            for path in protoset { try pool.add(files: try DescriptorPool(fileDescriptorSet: try FileReader().read(path)).files.values.map { $0 }) }
        } catch let error as ToolError {
            throw UsageError("--protoset: \(error.description)")
        } catch {
            throw UsageError("--protoset: not a FileDescriptorSet (\(error))")
        }
        if !proto.isEmpty {
            var arguments = ["protoc", "--include_imports", "--include_source_info", "--descriptor_set_out=/dev/stdout"]
            arguments += (importPath.isEmpty ? ["."] : importPath).map { "-I" + $0 }
            // The well-known types, from Debian's libprotobuf-dev, for imports of google/protobuf/*.
            if access("/usr/include/google/protobuf/timestamp.proto", R_OK) == 0 { arguments.append("-I/usr/include") }
            arguments += proto
            let result = try Subprocess.run(arguments)
            guard result.status == 0 else {
                throw UsageError("--proto: protoc failed: \(String(decoding: result.errorOutput, as: UTF8.self).trimmingWhitespace)")
            }
            try pool.add(files: try DescriptorPool(fileDescriptorSet: result.output).files.values.map { $0 })
        }
        return pool
    }
}

/// A connection to the server named by the call flags, for reflection.
struct ReflectionTarget {
    let client: RPCClient
    let options: CallOptions

    init(settings: CallSettings) throws {
        guard settings.transport == .grpc else {
            throw UsageError("reflection is gRPC: the gateway does not offer it (drop --transport http, or give --protoset / --proto)")
        }
        let endpoint = settings.endpoints[0]
        client = RPCClient(host: endpoint.host, port: endpoint.port, options: .defaults { $0.connectTimeout = settings.connectTimeout; $0.tls = settings.tls })
        options = CallOptions(timeout: settings.timeout, metadata: settings.metadata)
    }

    var reflection: ReflectionClient { ReflectionClient(client: client, options: options) }
}
