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
