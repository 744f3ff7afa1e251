#if canImport(Glibc)
import Glibc
#endif
import ProtobufKit

/// One named context of the configuration file: where calls go and what they carry.
public struct Profile: Sendable, Equatable {
    /// `grpc` or `http`.
    public var transport: TransportKind?
    /// gRPC addresses by service: a command name (`delivery`), a full service name, or `default`.
    public var servers: [String: [String]] = [:]
    /// The public gateway's `host:port` (or `http://host:port`), for `--transport http`.
    public var gateway: String?
    /// Metadata sent with every call, `name: value`.
    public var headers: [String] = []
    public var apiKey: String?
    public var timeout: String?
    public var connectTimeout: String?
    /// TLS for gRPC calls: `{"tls": {"cacert": FILE, "cert": FILE, "key": FILE, "servername": NAME,
    /// "insecure": false}}` (an empty object: TLS with the system's CAs). The flags override it.
    public var tls: TLSProfile?

    public init() {}
}

/// A context's TLS settings (the `--cacert`, `--cert`, `--key`, `--servername`, `--insecure` flags).
public struct TLSProfile: Sendable, Equatable {
    public var cacert: String?
    public var cert: String?
    public var key: String?
    public var servername: String?
    public var insecure = false
    public init() {}
}

/// The configuration file: named contexts and the current one, in the spirit of kubectl's.
///
/// Found at `$DRONECTL_CONFIG`, else `$XDG_CONFIG_HOME/dronectl/config.json`, else
/// `~/.config/dronectl/config.json`. JSON:
///
/// ```json
/// {"currentContext": "local",
///  "contexts": {"local": {"transport": "grpc", "servers": {"delivery": "127.0.0.1:50054"},
///                          "gateway": "127.0.0.1:8080", "apiKey": "...", "headers": ["x-team: ops"]}}}
/// ```
public struct ProfileStore: Sendable, Equatable {
    public var currentContext: String?
    /// Contexts in the file's order.
    public var contexts: [(name: String, profile: Profile)] = []

    public init() {}

    public static func == (lhs: ProfileStore, rhs: ProfileStore) -> Bool {
        lhs.currentContext == rhs.currentContext && lhs.contexts.map(\.name) == rhs.contexts.map(\.name)
            && lhs.contexts.map(\.profile) == rhs.contexts.map(\.profile)
    }

    public subscript(name: String) -> Profile? {
        get { contexts.first { $0.name == name }?.profile }
        set {
            if let index = contexts.firstIndex(where: { $0.name == name }) {
                if let newValue { contexts[index].profile = newValue } else { contexts.remove(at: index) }
            } else if let newValue {
                contexts.append((name, newValue))
            }
        }
    }

    /// Where the file is, by the environment.
    public static func path(environment: [String: String]) -> String {
        if let explicit = environment["DRONECTL_CONFIG"], !explicit.isEmpty { return explicit }
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty { return xdg + "/dronectl/config.json" }
        return (environment["HOME"] ?? ".") + "/.config/dronectl/config.json"
    }

    /// The file at `path`, or an empty store when there is none.
    public static func load(path: String) throws -> ProfileStore {
        guard access(path, F_OK) == 0 else { return ProfileStore() }
        let bytes = try FileReader().read(path)
        do {
            return try ProfileStore(json: try JSONParser.parse(bytes))
        } catch let error as UsageError {
            throw UsageError("configuration \(path): \(error.description)")
        } catch {
            throw UsageError("configuration \(path): \(error)")
        }
    }

    init(json: JSONValue) throws {
        guard case .object(let members) = json else { throw UsageError("expected a JSON object") }
        for member in members {
            switch member.key {
            case "currentContext":
                guard case .string(let name) = member.value else { throw UsageError("currentContext: expected a string") }
                currentContext = name
            case "contexts":
                guard case .object(let contexts) = member.value else { throw UsageError("contexts: expected an object") }
                for context in contexts {
                    do {
                        self[context.key] = try Self.profile(context.value)
                    } catch let error as UsageError {
                        throw UsageError("contexts.\(context.key).\(error.description)")
                    }
                }
            default:
                throw UsageError("unknown key \"\(member.key)\" (known: currentContext, contexts)")
            }
        }
    }

    static func profile(_ json: JSONValue) throws -> Profile {
        guard case .object(let members) = json else { throw UsageError("expected an object") }
        var profile = Profile()
        func string(_ value: JSONValue, _ key: String) throws -> String {
            guard case .string(let text) = value else { throw UsageError("\(key): expected a string") }
            return text
        }
        for member in members {
            switch member.key {
            case "transport":
                let text = try string(member.value, member.key)
                guard let transport = TransportKind(rawValue: text) else { throw UsageError("transport: expected grpc or http, got \"\(text)\"") }
                profile.transport = transport
            case "servers":
                guard case .object(let entries) = member.value else { throw UsageError("servers: expected an object of service: host:port") }
                for entry in entries {
                    switch entry.value {
                    case .string(let address): profile.servers[entry.key] = [address]
                    case .array(let list): profile.servers[entry.key] = try list.map { try string($0, "servers.\(entry.key)[]") }
                    default: throw UsageError("servers.\(entry.key): expected host:port or a list of them")
                    }
                }
            case "gateway": profile.gateway = try string(member.value, member.key)
            case "apiKey": profile.apiKey = try string(member.value, member.key)
            case "timeout": profile.timeout = try string(member.value, member.key)
            case "connectTimeout": profile.connectTimeout = try string(member.value, member.key)
            case "headers":
                guard case .array(let list) = member.value else { throw UsageError("headers: expected a list of \"name: value\"") }
                profile.headers = try list.map { try string($0, "headers[]") }
            case "tls":
                guard case .object(let entries) = member.value else { throw UsageError("tls: expected an object with cacert, cert, key, servername, insecure") }
                var tls = TLSProfile()
                for entry in entries {
                    switch entry.key {
                    case "cacert": tls.cacert = try string(entry.value, "tls.cacert")
                    case "cert": tls.cert = try string(entry.value, "tls.cert")
                    case "key": tls.key = try string(entry.value, "tls.key")
                    case "servername": tls.servername = try string(entry.value, "tls.servername")
                    case "insecure":
                        guard case .bool(let flag) = entry.value else { throw UsageError("tls.insecure: expected true or false") }
                        tls.insecure = flag
                    default: throw UsageError("tls: unknown key \"\(entry.key)\" (known: cacert, cert, key, servername, insecure)")
                    }
                }
                profile.tls = tls
            default:
                throw UsageError("unknown key \"\(member.key)\" (known: transport, servers, gateway, apiKey, headers, timeout, connectTimeout, tls)")
            }
        }
        return profile
    }

    /// The store as JSON (what `save` writes).
    public var json: JSONValue {
        var members: [JSONMember] = []
        if let currentContext { members.append(JSONMember("currentContext", .string(currentContext))) }
        members.append(JSONMember("contexts", .object(contexts.map { JSONMember($0.name, Self.json($0.profile, redacted: false)) })))
        return .object(members)
    }

    /// A context as JSON; `redacted` hides the API key.
    public static func json(_ profile: Profile, redacted: Bool) -> JSONValue {
        var members: [JSONMember] = []
        if let transport = profile.transport { members.append(JSONMember("transport", .string(transport.rawValue))) }
        if !profile.servers.isEmpty {
            members.append(JSONMember("servers", .object(profile.servers.keys.sorted().map { key in
                let list = profile.servers[key]!
                return JSONMember(key, list.count == 1 ? .string(list[0]) : .array(list.map { .string($0) }))
            })))
        }
        if let gateway = profile.gateway { members.append(JSONMember("gateway", .string(gateway))) }
        if !profile.headers.isEmpty { members.append(JSONMember("headers", .array(profile.headers.map { .string($0) }))) }
        if let apiKey = profile.apiKey { members.append(JSONMember("apiKey", .string(redacted ? redact(apiKey) : apiKey))) }
        if let timeout = profile.timeout { members.append(JSONMember("timeout", .string(timeout))) }
        if let connectTimeout = profile.connectTimeout { members.append(JSONMember("connectTimeout", .string(connectTimeout))) }
        if let tls = profile.tls {
            var fields: [JSONMember] = []
            for (name, value) in [("cacert", tls.cacert), ("cert", tls.cert), ("key", tls.key), ("servername", tls.servername)] {
                if let value { fields.append(JSONMember(name, .string(value))) }
            }
            if tls.insecure { fields.append(JSONMember("insecure", .bool(true))) }
            members.append(JSONMember("tls", .object(fields)))
        }
        return .object(members)
    }

    /// The first characters of a secret and its length, enough to tell keys apart.
    public static func redact(_ secret: String) -> String {
        secret.count <= 8 ? "****" : String(secret.prefix(8)) + "... (\(secret.count) characters)"
    }

    /// Writes the store to `path` (creating its folder), readable by its owner only: it may
    /// hold API keys. Written to a temporary file and renamed, so a failure leaves the old file.
    public func save(path: String) throws {
        var folder = path
        if let slash = folder.lastIndex(of: "/") { folder = String(folder[..<slash]) } else { folder = "." }
        try Self.makeDirectories(folder)
        let text = JSONText.pretty(json) + "\n"
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ToolError("cannot write \(temporary): \(FileReader.errorText())") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ToolError("cannot write \(path): \(FileReader.errorText())")
        }
    }

    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw ToolError("cannot create \(current): \(FileReader.errorText())")
            }
        }
    }
}

/// The ports `make run` gives the system's processes (tools/run-service.sh: base + offset, the
/// gateway at base + 9, or 8080 with the default base), by the dronectl command of the service
/// each serves. A test checks this table against tools/run-service.sh.
public enum LocalSystem {
    /// `make run`'s first port when FABRIKAM_PORT_BASE is not set (ServiceKit's ServicePorts).
    public static let defaultPortBase = 15051
    /// Process name in tools/run-service.sh, and the commands of the services it serves, in the
    /// order of their ports (ServiceKit's ServicePorts.Service; a test checks they agree).
    public static let processes: [(process: String, commands: [String])] = [
        ("accounts", ["accounts"]), ("package", ["package"]), ("dronescheduler", ["drone-scheduler", "telemetry"]), ("delivery", ["delivery"]),
        ("deliveryhistory", ["delivery-history"]), ("ingestion", ["ingestion"]), ("workflow", ["workflow"]),
        ("supervisor", ["supervisor"]), ("simulator", ["flight-control"]), ("gateway", []),
    ]

    /// A context for the system started with `FABRIKAM_PORT_BASE=base` (`make run`).
    public static func profile(portBase: Int, host: String = "127.0.0.1") -> Profile {
        var profile = Profile()
        for (offset, entry) in processes.enumerated() {
            for command in entry.commands { profile.servers[command] = ["\(host):\(portBase + offset)"] }
        }
        let gatewayPort = portBase == defaultPortBase ? 8080 : portBase + processes.count - 1
        profile.gateway = "\(host):\(gatewayPort)"
        return profile
    }
}
