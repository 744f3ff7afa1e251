#if canImport(Glibc)
import Glibc
#endif
import ProtobufKit
import RPC

/// A service as dronectl names it: its full name and its command.
public struct ServiceIdentity: Sendable, Hashable {
    public var fullName: String
    public var command: String
    public init(fullName: String, command: String) {
        self.fullName = fullName
        self.command = command
    }
}

/// A `host:port` to connect to.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Written as `https://...`: the address asks for TLS (port 443 unless given).
    public var asksForTLS = false
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// `host:port`, `[v6]:port`, or (for the gateway) `http://host[:port][/]` and
    /// `https://host[:port][/]`.
    public init(parsing text: String, defaultPort: Int? = nil) throws {
        var rest = Substring(text)
        var defaultPort = defaultPort
        if rest.hasPrefix("https://") {
            rest = rest.dropFirst(8)
            asksForTLS = true
            defaultPort = 443
        }
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw UsageError("--server \(text): expected [address]:port") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw UsageError("--server \(text): expected host:port") }
        guard let port = portText.flatMap({ Int($0) }) ?? (portText == nil ? defaultPort : nil), (1...65535).contains(port) else {
            throw UsageError("--server \(text): expected host:port with a port from 1 to 65535")
        }
        self.host = String(host)
        self.port = port
    }

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// Everything a call needs to know besides its messages, resolved from the flags, then the
/// environment (`DRONECTL_*`), then the configuration file's context: flags win over the
/// environment, which wins over the file.
public struct CallSettings: Sendable {
    public var transport: TransportKind = .grpc
    public var endpoints: [Endpoint] = []
    /// Metadata for every call (profile headers, `-H`, the API key).
    public var metadata = Metadata()
    public var timeout: Duration?
    public var connectTimeout: Duration = .seconds(5)
    public var verbose = false
    public var format: OutputFormat = .json
    public var encoding = JSONEncodingOptions()
    public var data: String?
    /// The context the settings came from, for messages.
    public var contextName: String?
    /// TLS for gRPC calls (nil: cleartext), from --tls and the flags that imply it.
    public var tls: ClientTLS?

    public init() {}

    /// Resolves the settings of a call to `service` (nil: a server named on the command line only).
    public static func resolve(_ flags: CallFlags, service: ServiceIdentity?, environment: [String: String]) throws -> CallSettings {
        var settings = CallSettings()
        let store = try ProfileStore.load(path: ProfileStore.path(environment: environment))
        let contextName = flags.context ?? environment["DRONECTL_CONTEXT"].flatMap { $0.isEmpty ? nil : $0 } ?? store.currentContext
        var profile = Profile()
        if let contextName {
            guard let found = store[contextName] else {
                let known = store.contexts.map(\.name)
                throw UsageError("context \"\(contextName)\" is not in \(ProfileStore.path(environment: environment))"
                                 + (known.isEmpty ? " (it has no contexts: dronectl config set NAME ...)" : " (contexts: \(known.joined(separator: ", ")))"))
            }
            profile = found
            settings.contextName = contextName
        }

        if let transport = flags.transport {
            settings.transport = transport
        } else if let text = environment["DRONECTL_TRANSPORT"], !text.isEmpty {
            guard let transport = TransportKind(rawValue: text) else { throw UsageError("DRONECTL_TRANSPORT: expected grpc or http, got \"\(text)\"") }
            settings.transport = transport
        } else if let transport = profile.transport {
            settings.transport = transport
        }

        // Addresses: the flag, the environment, then the context (per service for gRPC, the gateway for HTTP).
        var addresses = flags.server.flatMap { $0.split(separator: ",").map(String.init) }
        var origin = "--server"
        if addresses.isEmpty, let text = environment["DRONECTL_SERVER"], !text.isEmpty {
            addresses = text.split(separator: ",").map(String.init)
            origin = "DRONECTL_SERVER"
        }
        if addresses.isEmpty {
            origin = "context \(contextName ?? "")"
            switch settings.transport {
            case .http:
                if let gateway = profile.gateway { addresses = [gateway] }
            case .grpc:
                if let service {
                    addresses = profile.servers[service.command] ?? profile.servers[service.fullName] ?? profile.servers["default"] ?? []
                } else {
                    addresses = profile.servers["default"] ?? []
                }
            }
        }
        guard !addresses.isEmpty else {
            let what = settings.transport == .http ? "the gateway" : (service.map { "\($0.fullName)" } ?? "the server")
            throw UsageError("no address for \(what): give --server host:port, set DRONECTL_SERVER, or add it to a context (dronectl config set NAME --server ...)")
        }
        do {
            settings.endpoints = try addresses.map { try Endpoint(parsing: $0.trimmingWhitespace, defaultPort: settings.transport == .http ? 80 : nil) }
        } catch let error as UsageError where origin != "--server" {
            throw UsageError("\(origin): \(error.description.replacingFirst("--server ", with: ""))")
        }

        let timeoutText = flags.timeout ?? environment["DRONECTL_TIMEOUT"].flatMap { $0.isEmpty ? nil : $0 } ?? profile.timeout
        if let timeoutText { settings.timeout = try DurationText.parse(timeoutText, flag: "--timeout") }
        let connectText = flags.connectTimeout ?? environment["DRONECTL_CONNECT_TIMEOUT"].flatMap { $0.isEmpty ? nil : $0 } ?? profile.connectTimeout
        if let connectText { settings.connectTimeout = try DurationText.parse(connectText, flag: "--connect-timeout") }

        // Headers: the context's, then -H (a name given with -H replaces the context's values).
        let flagHeaders = try flags.header.map { try parseHeader($0, origin: "-H", environment: environment) }
        let flagNames = Set(flagHeaders.map(\.name))
        for header in try profile.headers.map({ try parseHeader($0, origin: "context header", environment: environment) }) where !flagNames.contains(header.name) {
            settings.metadata.append(header)
        }
        for header in flagHeaders { settings.metadata.append(header) }
        let apiKey = flags.apiKey ?? environment["DRONECTL_API_KEY"].flatMap { $0.isEmpty ? nil : $0 } ?? profile.apiKey
        if let apiKey, settings.metadata["authorization"] == nil {
            settings.metadata.add("authorization", "Bearer " + apiKey)
        }

        settings.verbose = flags.verbose
        settings.format = flags.format ?? .json
        settings.encoding.alwaysPrintFieldsWithNoPresence = flags.emitDefaults
        settings.encoding.preserveProtoFieldNames = flags.protoNames
        settings.data = flags.data
        settings.tls = try tlsSettings(flags, profile: profile.tls)
        // https://host names TLS by itself (with the system's CAs unless --cacert says otherwise).
        if settings.tls == nil && settings.endpoints.contains(where: \.asksForTLS) { settings.tls = ClientTLS() }
        return settings
    }

    /// TLS from the flags: `--tls`, or any of `--cacert`, `--cert`/`--key`, `--servername`,
    /// `--insecure` (each implies it). Without `--cacert` the system's CA store is trusted.
    static func tlsSettings(_ flags: CallFlags, profile: TLSProfile? = nil) throws -> ClientTLS? {
        let implied = flags.cacert != nil || flags.cert != nil || flags.key != nil || flags.servername != nil || flags.insecure
        guard flags.tls || implied || profile != nil else { return nil }
        // Each flag overrides the context's value; a client certificate comes as a pair.
        let cacert = flags.cacert ?? profile?.cacert
        let (cert, key) = flags.cert != nil || flags.key != nil ? (flags.cert, flags.key) : (profile?.cert, profile?.key)
        let servername = flags.servername ?? profile?.servername
        let insecure = flags.insecure || (profile?.insecure ?? false)
        if (cert == nil) != (key == nil) { throw UsageError("--cert and --key go together (a client certificate and its key)") }
        if insecure && (cacert != nil || servername != nil) {
            throw UsageError("--insecure skips verifying the server: it cannot be combined with --cacert or --servername")
        }
        for (flag, path) in [("--cacert", cacert), ("--cert", cert), ("--key", key)] {
            guard let path else { continue }
            guard access(path, R_OK) == 0 else { throw UsageError("\(flag) \(path): cannot read the file (\(String(cString: strerror(errno))))") }
        }
        return ClientTLS(caFile: cacert, certificateChainFile: cert, privateKeyFile: key, serverName: servername, verifiesServer: !insecure)
    }

    /// `name: value` (or `name:value`), with `${VAR}` replaced from the environment.
    static func parseHeader(_ text: String, origin: String, environment: [String: String]) throws -> (name: String, value: Metadata.Value) {
        guard let colon = text.firstIndex(of: ":"), colon != text.startIndex else {
            throw UsageError("\(origin) \(text): expected name: value")
        }
        let name = String(text[..<colon]).trimmingWhitespace.lowercased()
        guard name.unicodeScalars.allSatisfy(Self.isMetadataNameCharacter) else {
            throw UsageError("\(origin) \(text): a metadata name has only a-z, 0-9, '-', '_' and '.'")
        }
        if name.hasPrefix("grpc-") || ["content-type", "te", "user-agent", "host", "connection"].contains(name) {
            throw UsageError("\(origin) \(name): this header belongs to the protocol and cannot be set (use --timeout for grpc-timeout)")
        }
        let value = try expand(String(text[text.index(after: colon)...]).trimmingWhitespace, origin: "\(origin) \(name)", environment: environment)
        if name.hasSuffix("-bin") {
            guard let bytes = Base64.decode(value) ?? Base64.decode(value + String(repeating: "=", count: (4 - value.count % 4) % 4)) else {
                throw UsageError("\(origin) \(name): a -bin value must be base64, got \"\(value)\"")
            }
            return (name, .binary(bytes))
        }
        guard value.allSatisfy({ $0.isASCII && $0 != "\r" && $0 != "\n" }) else {
            throw UsageError("\(origin) \(name): a text value must be printable ASCII (use a name ending in -bin for bytes)")
        }
        return (name, .string(value))
    }

    static func isMetadataNameCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "a"..."z", "0"..."9", "-", "_", ".": return true
        default: return false
        }
    }

    /// Replaces `${VAR}` with the variable's value; an unset variable is an error, not "".
    static func expand(_ text: String, origin: String, environment: [String: String]) throws -> String {
        var result = ""
        var rest = Substring(text)
        while let start = rest.firstRange(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw UsageError("\(origin): '${' without a closing '}'")
            }
            let name = String(rest[start.upperBound..<end])
            guard let value = environment[name] else { throw UsageError("\(origin): ${\(name)} is not set in the environment") }
            result += value
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }
}

extension Metadata {
    mutating func append(_ header: (name: String, value: Metadata.Value)) {
        switch header.value {
        case .string(let text): add(header.name, text)
        case .binary(let bytes): add(header.name, binary: bytes)
        }
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}
