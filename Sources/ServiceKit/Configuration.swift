import Foundation

/// A service's settings, from command-line flags (`--name value` or `--name=value`) and then
/// environment variables (`FABRIKAM_NAME`, upper case, dashes as underscores), then the default.
/// Unknown flags are an error, so a typo never silently falls back to a default.
/// Every service also knows the flags in `commonFlags` (`--listen-host`).
public struct Configuration: Sendable {
    /// Flags every process accepts besides its own: `listen-host`, the address its listener
    /// binds (127.0.0.1 by default; 0.0.0.0 in a container, where callers come from other hosts).
    /// `otlp-endpoint`, the OpenTelemetry collector that spans go to (`Tracing`, read by
    /// `runService`; off when unset).
    public static let commonFlags = ["listen-host", "otlp-endpoint"]

    private var flags: [String: String] = [:]
    private let environment: [String: String]
    private let known: Set<String>

    /// Parses `arguments` (without the program name); `known` lists every flag the caller reads.
    public init(arguments: [String] = Array(CommandLine.arguments.dropFirst()),
                environment: [String: String] = ProcessInfo.processInfo.environment,
                known: [String]) throws {
        self.environment = environment
        let known = known + Self.commonFlags
        self.known = Set(known)
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            guard argument.hasPrefix("--") else { throw ConfigurationError("unexpected argument \(argument)") }
            var name = String(argument.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if name == "help" { throw ConfigurationError("flags: " + known.sorted().map { "--\($0)" }.joined(separator: " ")) }
            guard self.known.contains(name) else { throw ConfigurationError("unknown flag --\(name) (known: \(known.sorted().joined(separator: ", ")))") }
            guard let resolved = value ?? iterator.next() else { throw ConfigurationError("--\(name) needs a value") }
            flags[name] = resolved
        }
    }

    public static func environmentName(_ flag: String) -> String {
        "FABRIKAM_" + flag.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    public func string(_ name: String, default fallback: String) -> String {
        flags[name] ?? environment[Self.environmentName(name)] ?? fallback
    }

    /// The address the process's listener binds (`--listen-host`, `FABRIKAM_LISTEN_HOST`).
    public var listenHost: String { string("listen-host", default: "127.0.0.1") }

    /// A secret setting (a password, a token, an API key), or nil when none is configured. It
    /// comes from the environment (`FABRIKAM_NAME`) or, better, from a file whose path is in
    /// `FABRIKAM_NAME_FILE` or `--name-file`: the way Kubernetes and compose hand out Secrets
    /// (`/run/secrets/...`), so the value is in no environment, argument list or manifest. A flag
    /// `--name` with the value itself counts only where the caller lists it as known (the local
    /// demo's `--seed-api-key`). One trailing line break is dropped from a file, as `echo` writes
    /// one. Two sources at once, an unreadable file or an empty value are errors that name the
    /// setting and the file, never the value.
    public func secret(_ name: String) throws -> String? {
        let variable = Self.environmentName(name)
        var sources: [(what: String, read: () throws -> String)] = []
        // An empty value counts as unset (compose's `${VAR-}` gives one); an empty file does not.
        if let value = flags[name], !value.isEmpty { sources.append(("--\(name)", { value })) }
        if let value = environment[variable], !value.isEmpty { sources.append((variable, { value })) }
        if let path = flags["\(name)-file"] { sources.append(("--\(name)-file \(path)", { try Self.readSecretFile(path, for: "--\(name)-file") })) }
        if let path = environment[variable + "_FILE"] { sources.append(("\(variable)_FILE=\(path)", { try Self.readSecretFile(path, for: variable + "_FILE") })) }
        guard let source = sources.first else { return nil }
        guard sources.count == 1 else {
            throw ConfigurationError("the secret \(name) is given \(sources.count) ways (\(sources.map(\.what).joined(separator: ", "))): give one")
        }
        let value = try source.read()
        guard !value.isEmpty else { throw ConfigurationError("the secret \(name) is empty (\(source.what))") }
        guard !value.contains(where: \.isNewline) else { throw ConfigurationError("the secret \(name) holds a line break inside (\(source.what))") }
        return value
    }

    private static func readSecretFile(_ path: String, for setting: String) throws -> String {
        guard !path.isEmpty else { throw ConfigurationError("\(setting) is empty: it must name a file") }
        // open(2) directly: its errno says why (no such file, permission denied) in plain words.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw ConfigurationError("\(setting): cannot read \(path): \(String(cString: strerror(errno)))") }
        let data = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true).readDataToEndOfFile()
        guard var text = String(data: data, encoding: .utf8) else { throw ConfigurationError("\(setting): \(path) is not UTF-8 text") }
        // "\r\n" is one Character in Swift, so one removeLast() drops either ending whole.
        if let last = text.last, last == "\n" || last == "\r\n" { text.removeLast() }
        return text
    }

    public func int(_ name: String, default fallback: Int) throws -> Int {
        let text = string(name, default: String(fallback))
        guard let value = Int(text) else { throw ConfigurationError("--\(name) must be an integer, got \"\(text)\"") }
        return value
    }

    public func double(_ name: String, default fallback: Double) throws -> Double {
        let text = string(name, default: String(fallback))
        guard let value = Double(text) else { throw ConfigurationError("--\(name) must be a number, got \"\(text)\"") }
        return value
    }

    /// A `host:port` address; the default is 127.0.0.1 and the service's default port.
    public func address(_ name: String, defaultPort: Int) throws -> (host: String, port: Int) {
        let text = string(name, default: "127.0.0.1:\(defaultPort)")
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ConfigurationError("--\(name) must be host:port, got \"\(text)\"")
        }
        return (String(text[..<colon]), port)
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The default port of each service, from `ServicePorts` (the one place their order is written).
public enum DefaultPort {
    public static var accounts: Int { ServicePorts.port(of: .accounts) }
    public static var package: Int { ServicePorts.port(of: .package) }
    public static var droneScheduler: Int { ServicePorts.port(of: .droneScheduler) }
    public static var delivery: Int { ServicePorts.port(of: .delivery) }
    public static var deliveryHistory: Int { ServicePorts.port(of: .deliveryHistory) }
    public static var ingestion: Int { ServicePorts.port(of: .ingestion) }
    public static var workflow: Int { ServicePorts.port(of: .workflow) }
    public static var supervisor: Int { ServicePorts.port(of: .supervisor) }
    public static var simulator: Int { ServicePorts.port(of: .simulator) }
    public static var gateway: Int { ServicePorts.port(of: .gateway) }
}
