import ArgumentParser

/// How a call's output is printed.
public enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// Canonical proto3 JSON, one message per line.
    case json
    /// An indented `name: value` form for people.
    case text
    /// One JSON document: headers, every message, trailers and the status.
    case envelope
}

/// Which door a call goes through.
public enum TransportKind: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// gRPC to the service (HTTP/2, cleartext).
    case grpc
    /// JSON over HTTP to the public gateway, by the method's `google.api.http` annotation.
    case http
}

/// The flags every call takes, whatever the method: where to send it, what to send with it,
/// and how to print what comes back. Values left unset come from the environment
/// (`DRONECTL_*`) and then the current context of the configuration file.
public struct CallFlags: ParsableArguments, Sendable {
    @Option(name: [.customShort("d"), .customLong("data")],
            help: ArgumentHelp("The request as JSON: '{...}', @FILE, or @- for standard input. Client streams read NDJSON (one message per line). Field flags override its fields.",
                               valueName: "json|@file|@-"))
    public var data: String?

    @Option(name: .customLong("server"), parsing: .singleValue,
            help: ArgumentHelp("host:port to call (repeat, or separate with commas, to spread calls round-robin). Over --transport http: the gateway's host:port or http://host:port.", valueName: "host:port"))
    public var server: [String] = []

    @Option(name: [.customShort("H"), .customLong("header")], parsing: .singleValue,
            help: ArgumentHelp("Metadata 'name: value' (repeatable); ${VAR} is replaced from the environment; values of names ending in -bin are base64.", valueName: "name:value"))
    public var header: [String] = []

    @Option(name: .customLong("timeout"), help: ArgumentHelp("The call's deadline, for example 2s, 500ms, 1m30s (sent as grpc-timeout).", valueName: "duration"))
    public var timeout: String?

    @Option(name: .customLong("connect-timeout"), help: ArgumentHelp("How long to wait for the connection (default 5s).", valueName: "duration"))
    public var connectTimeout: String?

    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "Print the request line, headers, trailers and timing on standard error.")
    public var verbose = false

    @Option(name: [.customShort("o"), .customLong("format")], help: ArgumentHelp("Output: json (one message per line), text, or envelope (one JSON document with headers, messages, trailers and status).", valueName: "format"))
    public var format: OutputFormat?

    @Flag(name: .customLong("emit-defaults"), help: "Print fields that hold their default value (0, \"\", false, []).")
    public var emitDefaults = false

    @Flag(name: .customLong("proto-names"), help: "Print proto field names (package_info) instead of JSON names (packageInfo).")
    public var protoNames = false

    @Option(name: .customLong("transport"), help: ArgumentHelp("grpc (to the service) or http (to the public gateway).", valueName: "grpc|http"))
    public var transport: TransportKind?

    @Option(name: .customLong("context"), help: ArgumentHelp("The configuration context to use instead of the current one.", valueName: "name"))
    public var context: String?

    @Option(name: .customLong("api-key"), help: ArgumentHelp("API key, sent as 'authorization: Bearer KEY'.", valueName: "key"))
    public var apiKey: String?

    // TLS (gRPC transport): each of the options below implies --tls.
    @Flag(name: .customLong("tls"), help: "Use TLS with ALPN h2, verifying the server against the system's CAs (or --cacert).")
    public var tls = false

    @Option(name: .customLong("cacert"), help: ArgumentHelp("CA certificates (PEM) to verify the server with, instead of the system's.", valueName: "file"))
    public var cacert: String?

    @Option(name: .customLong("cert"), help: ArgumentHelp("Client certificate (PEM) for mutual TLS (with --key).", valueName: "file"))
    public var cert: String?

    @Option(name: .customLong("key"), help: ArgumentHelp("Client private key (PEM) for mutual TLS (with --cert).", valueName: "file"))
    public var key: String?

    @Option(name: .customLong("servername"), help: ArgumentHelp("Server name to send in SNI and verify the certificate against (default: the --server host).", valueName: "name"))
    public var servername: String?

    @Flag(name: .customLong("insecure"), help: "Skip verifying the server's certificate (local experiments only: the traffic can then be read and changed).")
    public var insecure = false

    public init() {}

    /// Flags with nothing given, as parsed from an empty command line. `init()` alone leaves
    /// the options without defaults undecoded, and ArgumentParser traps when one is read.
    public static var unset: CallFlags {
        // An empty argument list has nothing that could fail to parse.
        try! CallFlags.parse([])
    }
}
