#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import ProtobufKit

/// What a generated method command runs: resolve the settings, build the request from `-d`
/// and the field flags with the generated types, call, print, and exit with the call's code.
public enum GeneratedCall<Spec: MethodSpec> {
    /// - Parameters:
    ///   - call: the command's call flags.
    ///   - command: the service's command name (`delivery`), for the context's addresses.
    ///   - files: the generated files, for `google.protobuf.Any` and HTTP transcoding.
    ///   - fields: every field flag of the command, given or not.
    public static func run(_ call: CallFlags, command: String, files: [ProtoFileMetadata], fields: [FieldFlag]) async throws {
        let settings: CallSettings
        let assembler: RequestAssembler
        do {
            settings = try CallSettings.resolve(call, service: ServiceIdentity(fullName: Spec.descriptor.service, command: command),
                                                environment: ProcessEnvironment.current)
            assembler = try RequestAssembler(flags: fields)
        } catch let error as UsageError {
            Terminal.error("dronectl: \(error.description)")
            throw ExitCode(ExitStatus.usage)
        } catch let error as ToolError {
            Terminal.error("dronectl: \(error.description)")
            throw ExitCode(ExitStatus.failure)
        }
        let runner = CallRunner(method: Spec.descriptor, codec: TypedCodec<Spec.Input, Spec.Output>(files: files),
                                settings: settings, assembler: assembler)
        let code = await runner.run()
        if code != 0 { throw ExitCode(code) }
    }
}

/// The process's environment variables.
public enum ProcessEnvironment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
