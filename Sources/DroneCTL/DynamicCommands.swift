import ArgumentParser
import DynamicProtobuf
import ProtobufCodeGen
import ProtobufKit
import RPC

/// Runs a built-in command's body, turning its errors into dronectl's exit codes.
func runReporting(_ body: () async throws -> Int32) async throws {
    let code: Int32
    do {
        code = try await body()
    } catch let error as UsageError {
        Terminal.error("dronectl: \(error.description)")
        code = ExitStatus.usage
    } catch let error as ToolError {
        Terminal.error("dronectl: \(error.description)")
        code = ExitStatus.failure
    } catch let error as RPCError {
        Terminal.error("error: \(error)")
        code = ExitStatus.forStatus(error.code)
    } catch let error as DynamicCodecError {
        Terminal.error("dronectl: \(error.description)")
        code = ExitStatus.failure
    }
    if code != 0 { throw ExitCode(code) }
}

/// Services and methods a server offers (by reflection) or files describe, one per line.
public struct ListCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the services of any gRPC server (by reflection), or the methods of one.",
        discussion: """
            With no SERVICE, prints every service the server lists, one per line. With SERVICE, prints \
            its methods as SERVICE/METHOD, the form `dronectl call` takes. Reflection v1 is tried first, \
            then v1alpha. With --protoset or --proto, the files are listed instead and no server is asked.
            """
    )

    @Argument(help: ArgumentHelp("A service to list the methods of.", valueName: "service"),
              completion: .custom(Completions.services))
    public var service: String?

    @OptionGroup public var call: CallFlags
    @OptionGroup public var source: DescriptorSourceFlags

    public init() {}

    public func run() async throws {
        try await runReporting {
            let (services, pool) = try await describedServices(call: call, source: source, symbols: service.map { [$0] } ?? [])
            if let service {
                guard let found = pool.services[service]?.service else {
                    throw UsageError("\(service) is not a service here (services: \(services.joined(separator: ", ")))")
                }
                Terminal.write(found.methods.map { "\(service)/\($0.name)\n" }.joined())
            } else {
                Terminal.write(services.map { $0 + "\n" }.joined())
            }
            return 0
        }
    }
}

/// A symbol (service, method, message, enum) in proto syntax.
public struct DescribeCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "describe",
        abstract: "Describe a service, method, message or enum of any gRPC server, in proto syntax.",
        discussion: "Without SYMBOL, describes every service. Descriptors come from the server's reflection, or from --protoset / --proto files."
    )

    @Argument(help: ArgumentHelp("A fully qualified name: package.Service, package.Service.Method (or /), package.Message, package.Enum.", valueName: "symbol"),
              completion: .custom(Completions.symbols))
    public var symbol: String?

    @OptionGroup public var call: CallFlags
    @OptionGroup public var source: DescriptorSourceFlags

    public init() {}

    public func run() async throws {
        try await runReporting {
            let symbolName = symbol.map { $0.replacingFirst("/", with: ".") }
            let (services, pool) = try await describedServices(call: call, source: source, symbols: symbolName.map { [Self.containingSymbol($0)] })
            guard let symbolName else {
                Terminal.write(services.compactMap { pool.services[$0] }.map { ProtoText.serviceText($0.service) }.joined(separator: "\n"))
                return 0
            }
            guard let text = ProtoText.describe(symbolName, in: pool) else {
                throw UsageError("\(symbolName) is not a service, method, message or enum here")
            }
            Terminal.write(text)
            return 0
        }
    }

    /// Reflection knows methods by `Service.Method`; both forms find the service's file.
    static func containingSymbol(_ symbol: String) -> String { symbol }
}

/// Calls any method of any server, with messages built from the reflected descriptors.
public struct CallCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call any method of any gRPC server (types by reflection, --protoset or --proto).",
        discussion: """
            METHOD is package.Service/Method (package.Service.Method works too). The request is -d JSON \
            (client streams: NDJSON lines). Output, streaming, metadata, timeouts and exit codes are \
            those of the generated commands; --transport http calls the gateway when the method has a \
            google.api.http annotation.
            """
    )

    @Argument(help: ArgumentHelp("package.Service/Method", valueName: "method"), completion: .custom(Completions.methods))
    public var method: String

    @OptionGroup public var call: CallFlags
    @OptionGroup public var source: DescriptorSourceFlags

    public init() {}

    public func run() async throws {
        var code: Int32 = 0
        try await runReporting {
            let serviceName = try Self.serviceName(method)
            let pool: DescriptorPool
            var settings = try CallSettings.resolve(call, service: ServiceIdentity(fullName: serviceName, command: serviceName),
                                                    environment: ProcessEnvironment.current)
            if source.usesFiles {
                pool = try source.filePool()
            } else {
                // Reflection is asked over gRPC even when the call goes to the gateway: then the
                // reflection server is the one --server or the context names for gRPC.
                var reflectionSettings = settings
                if settings.transport == .http {
                    var grpcFlags = call
                    grpcFlags.transport = .grpc
                    reflectionSettings = try CallSettings.resolve(grpcFlags, service: ServiceIdentity(fullName: serviceName, command: serviceName),
                                                                  environment: ProcessEnvironment.current)
                }
                let target = try ReflectionTarget(settings: reflectionSettings)
                pool = try await target.reflection.pool(describing: [serviceName])
                await target.client.close()
            }
            let found: (service: ProtoService, method: ProtoMethod)
            do {
                found = try pool.method(method)
            } catch let error as DynamicCodecError {
                throw UsageError(error.description)
            }
            let descriptor = pool.methodDescriptor(service: found.service, method: found.method)
            settings.format = call.format ?? .json
            let runner = CallRunner(method: descriptor,
                                    codec: DynamicMessageCodec(pool: pool, inputType: found.method.inputType, outputType: found.method.outputType),
                                    settings: settings, assembler: try RequestAssembler(flags: []))
            code = await runner.run()
            return 0
        }
        if code != 0 { throw ExitCode(code) }
    }

    /// `pkg.Service/Method` or `pkg.Service.Method` -> `pkg.Service`.
    static func serviceName(_ method: String) throws -> String {
        let text = method.hasPrefix("/") ? String(method.dropFirst()) : method
        if let slash = text.firstIndex(of: "/") { return String(text[..<slash]) }
        if let dot = text.lastIndex(of: ".") { return String(text[..<dot]) }
        throw UsageError("\"\(method)\" is not SERVICE/METHOD (for example grpc.health.v1.Health/Check)")
    }
}

/// The services and descriptors of the server (or files) the flags name. `symbols` narrows
/// the reflection to what is needed; nil asks for every listed service.
func describedServices(call: CallFlags, source: DescriptorSourceFlags, symbols: [String]?) async throws -> (services: [String], pool: DescriptorPool) {
    if source.usesFiles {
        let pool = try source.filePool()
        return (pool.services.keys.sorted(), pool)
    }
    let settings = try CallSettings.resolve(call, service: nil, environment: ProcessEnvironment.current)
    let target = try ReflectionTarget(settings: settings)
    defer { Task { await target.client.close() } }
    let reflection = target.reflection
    let services = try await reflection.listServices()
    // A plain list needs names only; a description needs the files.
    if symbols == [] { return (services, DescriptorPool()) }
    let pool = try await reflection.pool(describing: symbols ?? services, skipUnknown: symbols == nil)
    return (services, pool)
}
