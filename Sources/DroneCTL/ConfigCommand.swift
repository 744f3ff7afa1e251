import ArgumentParser
import ProtobufKit

/// `dronectl config`: the configuration file's contexts, listed, shown, switched and edited.
public struct ConfigCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "List, switch and edit the contexts of the configuration file.",
        discussion: """
            A context names where calls go and what they carry: gRPC addresses per service, the \
            gateway's address, the transport, default headers and an API key. The file is \
            $DRONECTL_CONFIG, else $XDG_CONFIG_HOME/dronectl/config.json, else \
            ~/.config/dronectl/config.json. Environment variables (DRONECTL_CONTEXT, DRONECTL_SERVER, \
            DRONECTL_TRANSPORT, DRONECTL_API_KEY, DRONECTL_TIMEOUT, DRONECTL_CONNECT_TIMEOUT) override \
            the file; flags override both.
            """,
        subcommands: [List.self, Use.self, Current.self, Show.self, Set.self, Delete.self, Path.self],
        defaultSubcommand: List.self
    )

    public init() {}

    static var path: String { ProfileStore.path(environment: ProcessEnvironment.current) }

    static func load() throws -> ProfileStore {
        do {
            return try ProfileStore.load(path: path)
        } catch let error as UsageError {
            Terminal.error("dronectl: \(error.description)")
            throw ExitCode(ExitStatus.usage)
        }
    }

    static func save(_ store: ProfileStore) throws {
        do {
            try store.save(path: path)
        } catch let error as ToolError {
            Terminal.error("dronectl: \(error.description)")
            throw ExitCode(ExitStatus.failure)
        }
    }

    static func fail(_ message: String) -> ExitCode {
        Terminal.error("dronectl: \(message)")
        return ExitCode(ExitStatus.usage)
    }

    /// `dronectl config list`: one context per line, `*` on the current one.
    public struct List: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "list", abstract: "List the contexts; * marks the current one.")
        public init() {}
        public func run() throws {
            let store = try ConfigCommand.load()
            let current = ProcessEnvironment.current["DRONECTL_CONTEXT"].flatMap { $0.isEmpty ? nil : $0 } ?? store.currentContext
            guard !store.contexts.isEmpty else {
                Terminal.error("no contexts in \(ConfigCommand.path) (add one: dronectl config set NAME --server HOST:PORT)")
                return
            }
            let width = max(4, store.contexts.map(\.name.count).max() ?? 0)
            var text = "  " + "NAME".padded(width) + "  TRANSPORT  GATEWAY\n"
            for (name, profile) in store.contexts {
                text += (name == current ? "* " : "  ") + name.padded(width) + "  " + (profile.transport?.rawValue ?? "grpc").padded(9)
                    + "  " + (profile.gateway ?? "-") + "\n"
            }
            Terminal.write(text)
        }
    }

    /// `dronectl config use NAME`.
    public struct Use: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "use", abstract: "Make a context the current one.")
        @Argument(help: "The context.", completion: .shellCommand("dronectl config list 2>/dev/null | tail -n +2 | cut -c3- | cut -d' ' -f1"))
        public var name: String
        public init() {}
        public func run() throws {
            var store = try ConfigCommand.load()
            guard store[name] != nil else {
                throw ConfigCommand.fail("no context \"\(name)\" (contexts: \(store.contexts.map(\.name).joined(separator: ", ")))")
            }
            store.currentContext = name
            try ConfigCommand.save(store)
            Terminal.write("current context: \(name)\n")
        }
    }

    /// `dronectl config current`.
    public struct Current: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "current", abstract: "Print the current context's name.")
        public init() {}
        public func run() throws {
            let store = try ConfigCommand.load()
            guard let name = ProcessEnvironment.current["DRONECTL_CONTEXT"].flatMap({ $0.isEmpty ? nil : $0 }) ?? store.currentContext else {
                throw ConfigCommand.fail("no current context (dronectl config use NAME)")
            }
            Terminal.write(name + "\n")
        }
    }

    /// `dronectl config show [NAME]`: a context as JSON, its API key shortened.
    public struct Show: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a context (default: the current one) as JSON.")
        @Argument(help: "The context.") public var name: String?
        @Flag(name: .customLong("show-secrets"), help: "Print the API key whole.") public var showSecrets = false
        public init() {}
        public func run() throws {
            let store = try ConfigCommand.load()
            guard let name = name ?? store.currentContext else { throw ConfigCommand.fail("no current context; name one") }
            guard let profile = store[name] else { throw ConfigCommand.fail("no context \"\(name)\"") }
            Terminal.write(JSONText.pretty(ProfileStore.json(profile, redacted: !showSecrets)) + "\n")
        }
    }

    /// `dronectl config set NAME ...`: creates or changes a context.
    public struct Set: ParsableCommand {
        public static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Create or change a context.",
            discussion: """
                --server takes host:port (every service) or SERVICE=host:port (one service, by its \
                command name such as delivery, or its full name). --local-system BASE sets every \
                service and the gateway of a system started with `make run` (FABRIKAM_PORT_BASE=BASE).
                """
        )
        @Argument(help: "The context.") public var name: String
        @Option(name: .customLong("server"), parsing: .singleValue, help: ArgumentHelp("host:port or SERVICE=host:port (repeatable).", valueName: "address"))
        public var server: [String] = []
        @Option(name: .customLong("gateway"), help: ArgumentHelp("The public gateway's host:port.", valueName: "host:port")) public var gateway: String?
        @Option(name: .customLong("transport"), help: ArgumentHelp("grpc or http.", valueName: "transport")) public var transport: TransportKind?
        @Option(name: .customLong("api-key"), help: ArgumentHelp("API key sent as a bearer token.", valueName: "key")) public var apiKey: String?
        @Option(name: [.customShort("H"), .customLong("header")], parsing: .singleValue, help: ArgumentHelp("A header for every call, name: value (repeatable; replaces the context's headers).", valueName: "name:value"))
        public var header: [String] = []
        @Option(name: .customLong("timeout"), help: ArgumentHelp("Default call deadline.", valueName: "duration")) public var timeout: String?
        @Option(name: .customLong("connect-timeout"), help: ArgumentHelp("Default connect timeout.", valueName: "duration")) public var connectTimeout: String?
        @Option(name: .customLong("local-system"), help: ArgumentHelp("Addresses of `make run` started with FABRIKAM_PORT_BASE=BASE (15051, its default: gateway on 8080; else BASE+9).", valueName: "base"))
        public var localSystem: Int?
        @Flag(name: .customLong("use"), help: "Also make it the current context.") public var use = false
        public init() {}

        public func run() throws {
            var store = try ConfigCommand.load()
            var profile = store[name] ?? Profile()
            do {
                if let localSystem {
                    let local = LocalSystem.profile(portBase: localSystem)
                    profile.servers.merge(local.servers) { $1 }
                    profile.gateway = local.gateway
                }
                for entry in server {
                    if let equals = entry.firstIndex(of: "="), !entry[..<equals].contains(":") {
                        let address = String(entry[entry.index(after: equals)...])
                        _ = try Endpoint(parsing: address)
                        profile.servers[String(entry[..<equals])] = address.split(separator: ",").map(String.init)
                    } else {
                        _ = try Endpoint(parsing: entry)
                        profile.servers["default"] = entry.split(separator: ",").map(String.init)
                    }
                }
                if let gateway { _ = try Endpoint(parsing: gateway, defaultPort: 80); profile.gateway = gateway }
                if let transport { profile.transport = transport }
                if let apiKey { profile.apiKey = apiKey }
                if !header.isEmpty {
                    for text in header { _ = try CallSettings.parseHeader(text, origin: "-H", environment: ProcessEnvironment.current) }
                    profile.headers = header
                }
                if let timeout { _ = try DurationText.parse(timeout, flag: "--timeout"); profile.timeout = timeout }
                if let connectTimeout { _ = try DurationText.parse(connectTimeout, flag: "--connect-timeout"); profile.connectTimeout = connectTimeout }
            } catch let error as UsageError {
                throw ConfigCommand.fail(error.description)
            }
            store[name] = profile
            if use || store.currentContext == nil { store.currentContext = name }
            try ConfigCommand.save(store)
            Terminal.write("context \(name) saved in \(ConfigCommand.path)\(store.currentContext == name ? " (current)" : "")\n")
        }
    }

    /// `dronectl config delete NAME`.
    public struct Delete: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a context.")
        @Argument(help: "The context.") public var name: String
        public init() {}
        public func run() throws {
            var store = try ConfigCommand.load()
            guard store[name] != nil else { throw ConfigCommand.fail("no context \"\(name)\"") }
            store[name] = nil
            if store.currentContext == name { store.currentContext = nil }
            try ConfigCommand.save(store)
        }
    }

    /// `dronectl config path`.
    public struct Path: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "path", abstract: "Print where the configuration file is.")
        public init() {}
        public func run() { Terminal.write(ConfigCommand.path + "\n") }
    }
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
