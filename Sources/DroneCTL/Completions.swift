import ArgumentParser
import DynamicProtobuf

/// Dynamic shell completion: the services and methods of the server named on the command line
/// being completed (`--server`, `--context`, `-H`, or the current context), asked by reflection.
/// A server that does not answer within a few seconds completes nothing.
public enum Completions {
    public static let services: @Sendable ([String], Int, String) async -> [String] = { words, _, _ in
        (try? await reflection(words) { try await $0.listServices() }) ?? []
    }

    public static let methods: @Sendable ([String], Int, String) async -> [String] = { words, _, _ in
        (try? await reflection(words) { reflection in
            let (services, pool) = try await reflection.poolOfEverything()
            return services.flatMap { name in (pool.services[name]?.service.methods ?? []).map { "\(name)/\($0.name)" } }
        }) ?? []
    }

    public static let symbols: @Sendable ([String], Int, String) async -> [String] = { words, _, _ in
        (try? await reflection(words) { reflection in
            let (services, pool) = try await reflection.poolOfEverything()
            let methods = services.flatMap { name in (pool.services[name]?.service.methods ?? []).map { "\(name).\($0.name)" } }
            return services + methods + pool.messages.keys.sorted() + pool.enums.keys.sorted()
        }) ?? []
    }

    /// The call flags found among the words of the command line.
    static func flags(_ words: [String]) -> CallFlags {
        var flags = CallFlags.unset
        var index = 0
        func value(_ name: String) -> String? {
            if words[index] == name, index + 1 < words.count { index += 1; return words[index] }
            if words[index].hasPrefix(name + "=") { return String(words[index].dropFirst(name.count + 1)) }
            return nil
        }
        while index < words.count {
            if let server = value("--server") { flags.server.append(server) }
            else if let context = value("--context") { flags.context = context }
            else if let header = value("-H") ?? value("--header") { flags.header.append(header) }
            else if let key = value("--api-key") { flags.apiKey = key }
            index += 1
        }
        flags.transport = .grpc
        flags.connectTimeout = "2s"
        flags.timeout = "3s"
        return flags
    }

    static func reflection<T: Sendable>(_ words: [String], _ body: (ReflectionClient) async throws -> T) async throws -> T {
        let settings = try CallSettings.resolve(flags(words), service: nil, environment: ProcessEnvironment.current)
        let target = try ReflectionTarget(settings: settings)
        defer { Task { await target.client.close() } }
        return try await body(target.reflection)
    }
}
