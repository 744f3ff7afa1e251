import DynamicProtobuf
import ProtobufKit

/// How a call's messages are made from JSON and printed as JSON: through generated types
/// (the generated commands) or through descriptors known at run time (`dronectl call`).
public protocol MessageCodec: Sendable {
    associatedtype Request: ProtobufKit.Message
    associatedtype Response: ProtobufKit.Message

    /// The request of the JSON document. Throws `JSONDecodingError` naming the field's path.
    func request(fromJSON json: JSONValue) throws -> Request
    /// The request as canonical JSON (to transcode it into an HTTP request).
    func canonicalJSON(of request: Request) throws -> [UInt8]
    /// A response from its JSON form (the gateway's answer).
    func response(fromJSON bytes: [UInt8]) throws -> Response
    /// A response as JSON, for printing.
    func json(of response: Response, options: JSONEncodingOptions) throws -> [UInt8]
    /// The descriptors of the request and response types, for transcoding over HTTP.
    func descriptorPool() throws -> DescriptorPool
}

/// Messages of generated types: the decoder's errors carry the JSON path of the field.
public struct TypedCodec<Request: ProtobufKit.Message, Response: ProtobufKit.Message>: MessageCodec {
    let decoding: JSONDecodingOptions
    let files: [ProtoFileMetadata]

    public init(files: [ProtoFileMetadata]) {
        self.files = files
        decoding = JSONDecodingOptions.defaults { $0.typeRegistry = TypeRegistry(files: files).adding(TypeRegistry.wellKnownTypesList) }
    }

    public func request(fromJSON json: JSONValue) throws -> Request { try Request(jsonValue: json, options: decoding) }
    public func canonicalJSON(of request: Request) throws -> [UInt8] {
        try request.jsonUTF8Bytes(options: .defaults { $0.typeRegistry = decoding.typeRegistry })
    }
    public func response(fromJSON bytes: [UInt8]) throws -> Response { try Response(jsonUTF8Bytes: bytes, options: decoding) }
    public func json(of response: Response, options: JSONEncodingOptions) throws -> [UInt8] {
        var options = options
        options.typeRegistry = decoding.typeRegistry
        return try response.jsonUTF8Bytes(options: options)
    }
    public func descriptorPool() throws -> DescriptorPool { try DescriptorPool(generated: files + ProtobufKit.wellKnownFiles) }
}

extension TypeRegistry {
    /// The well-known message types, as a list to add to another registry.
    static let wellKnownTypesList: [any ProtobufKit.Message.Type] = ProtobufKit.wellKnownFiles.flatMap(\.messageTypes)
}

/// Messages known only by their descriptors (reflection, protoset or .proto files).
public struct DynamicMessageCodec: MessageCodec {
    public typealias Request = RawMessage
    public typealias Response = RawMessage
    let codec: DynamicCodec
    let inputType: String
    let outputType: String

    public init(pool: DescriptorPool, inputType: String, outputType: String) {
        codec = DynamicCodec(pool: pool)
        self.inputType = inputType
        self.outputType = outputType
    }

    public func request(fromJSON json: JSONValue) throws -> RawMessage {
        try RawMessage(encoded: try codec.encode(json: json, as: inputType))
    }
    public func canonicalJSON(of request: RawMessage) throws -> [UInt8] { try codec.json(from: request.encoded, as: inputType) }
    public func response(fromJSON bytes: [UInt8]) throws -> RawMessage {
        try RawMessage(encoded: try codec.encode(json: try JSONParser.parse(bytes), as: outputType))
    }
    public func json(of response: RawMessage, options: JSONEncodingOptions) throws -> [UInt8] {
        try codec.json(from: response.encoded, as: outputType, options: options)
    }
    public func descriptorPool() throws -> DescriptorPool { codec.pool }
}
