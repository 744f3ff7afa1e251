import ProtobufKit
import RPC
import Synchronization

/// Runs one call of any shape, over either transport, and prints it: the engine behind every
/// generated command and `dronectl call`.
public struct CallRunner<Codec: MessageCodec>: Sendable {
    public let method: MethodDescriptor
    public let codec: Codec
    public let settings: CallSettings
    public let assembler: RequestAssembler

    public init(method: MethodDescriptor, codec: Codec, settings: CallSettings, assembler: RequestAssembler) {
        self.method = method
        self.codec = codec
        self.settings = settings
        self.assembler = assembler
    }

    /// Runs the call; returns the process's exit code (see `ExitStatus`).
    public func run() async -> Int32 {
        do {
            let source = try RequestSource(data: settings.data)
            // Everything that can be checked is checked before anything is sent.
            let requests: Requests
            if method.clientStreaming {
                requests = source.isReadAhead ? .list(try await readAll(source)) : .live(source)
            } else {
                let (document, name) = try source.single()
                requests = .one(try request(from: document, source: name))
            }
            switch settings.transport {
            case .grpc: return try await GRPCTransport(runner: self).call(requests)
            case .http: return try await HTTPTransport(runner: self).call(requests)
            }
        } catch let error as UsageError {
            Terminal.error("dronectl: \(error.description)")
            return ExitStatus.usage
        } catch let error as ToolError {
            Terminal.error("dronectl: \(error.description)")
            return ExitStatus.failure
        } catch {
            Terminal.error("dronectl: \(error)")
            return ExitStatus.failure
        }
    }

    /// The requests of a call.
    enum Requests {
        case one(Codec.Request)
        /// Read ahead from text or a file, every one checked.
        case list([Codec.Request])
        /// Read from standard input as the call runs.
        case live(RequestSource)
    }

    /// The request of one document, with the flags laid over it.
    func request(from document: JSONValue?, source: String) throws -> Codec.Request {
        let assembled = try assembler.assemble(document, source: source)
        do {
            return try codec.request(fromJSON: assembled)
        } catch let error as JSONDecodingError {
            throw assembler.explain(error, source: source)
        }
    }

    func readAll(_ source: RequestSource) async throws -> [Codec.Request] {
        var lines = source.lines()
        var result: [Codec.Request] = []
        while let (document, name) = try await lines.next() { result.append(try request(from: document, source: name)) }
        return result
    }

    /// A response as JSON; a response that cannot be read ends the call with INTERNAL.
    func json(of response: Codec.Response) throws -> [UInt8] {
        do {
            return try codec.json(of: response, options: settings.encoding)
        } catch {
            throw RPCError(.internal, "could not read the response as \(method.outputType): \(error)")
        }
    }

    func makePrinter(server: String) -> CallPrinter {
        CallPrinter(format: settings.format, verbose: settings.verbose, method: method, transport: settings.transport, server: server)
    }
}

/// Remembers the first failure of a request sender that runs beside the call.
final class SenderFailure: Sendable {
    private let error = Mutex<(any Error)?>(nil)
    func record(_ failure: any Error) { error.withLock { if $0 == nil { $0 = failure } } }
    var recorded: (any Error)? { error.withLock { $0 } }
}
