import Foundation
import ServiceKit

/// Everything the gateway does that is not in the .proto files, read from a JSON file
/// (`--config FILE`, see `config/gateway.json`); every key is optional and has a default.
public struct GatewayConfiguration: Codable, Sendable {
    public struct RateLimit: Codable, Sendable {
        /// Sustained requests per second, and the burst allowed above it.
        public var requestsPerSecond: Double = 50
        public var burst: Double = 100

        public init(requestsPerSecond: Double = 50, burst: Double = 100) {
            self.requestsPerSecond = requestsPerSecond
            self.burst = burst
        }
    }

    /// How the listener protects itself from slow, idle and too many connections.
    public struct Listener: Codable, Sendable {
        /// A request head (HTTP/1.1), or the connection preface and SETTINGS (HTTP/2), must
        /// arrive within this many seconds of its first byte (of the connection, for a preface).
        public var headerTimeoutSeconds = 10.0
        /// A request body must arrive within this many seconds of its head.
        public var bodyTimeoutSeconds = 30.0
        /// A connection with no request in progress (HTTP/1.1) or no open stream (HTTP/2) is
        /// closed after this many seconds.
        public var idleTimeoutSeconds = 60.0
        /// Connections open at once, every client together (at most the process's file
        /// descriptor limit less 256); more are closed as they are accepted.
        public var maxConnections = 10_000
        /// Connections open at once from one client address, so one client cannot take them all.
        public var maxConnectionsPerAddress = 1_000

        public init() {}
    }

    public struct CORS: Codable, Sendable {
        /// Origins allowed to call from a browser (`*` for any).
        public var allowedOrigins: [String] = ["*"]
        public var allowedHeaders: [String] = ["authorization", "content-type", "x-api-key", "x-request-id", "traceparent", "grpc-timeout", "idempotency-key"]
        public var maxAgeSeconds: Int = 600
    }

    public var host = "127.0.0.1"
    public var port = ServicePorts.defaultGatewayPort
    /// Backend addresses by service short name (the `<name>` of `fabrikam.dronedelivery.<name>.v1`);
    /// by default the services' ports on this machine (`ServicePorts`).
    public var upstreams: [String: String] = Dictionary(uniqueKeysWithValues: [ServicePorts.Service.accounts, .package, .droneScheduler,
                                                                              .delivery, .deliveryHistory, .ingestion].map {
        ($0.name, "127.0.0.1:\(ServicePorts.port(of: $0))")
    })
    /// Largest request body accepted (413 above).
    public var maxBodyBytes = 1 << 20
    /// Deadline of an upstream call when the client sends no `grpc-timeout` header, and the
    /// longest one a client may ask for.
    public var defaultTimeoutMilliseconds = 10_000
    public var maxTimeoutMilliseconds = 60_000
    /// Server-streaming calls: keep-alive comment interval (SSE) or empty line (NDJSON).
    public var heartbeatSeconds = 15.0
    /// Per API key.
    public var rateLimit = RateLimit()
    /// Per client address, for requests that carry no valid API key: public routes (a business
    /// registering), missing keys and failed authentication.
    public var anonymousRateLimit = RateLimit(requestsPerSecond: 10, burst: 40)
    public var listener = Listener()
    public var cors = CORS()
    /// Request headers passed to the services as metadata (lower case). Never the caller's
    /// identity (`x-user-id`, `x-account-id`, `x-api-key-id`): the gateway sets those from the key.
    public var forwardHeaders: [String] = ["accept-language"]
    /// Routes callable without an API key, as "METHOD /template".
    public var publicRoutes: [String] = ["POST /v1/accounts"]
    /// Routes that need a key with the ADMIN role (an account's users and keys). Other routes
    /// need DELIVERIES (changes) or READ_ONLY (GET); a tracking token reads one delivery only.
    public var adminRoutes: [String] = ["POST /v1/accounts/{account_id}/users", "POST /v1/accounts/{account_id}/apikeys",
                                        "DELETE /v1/accounts/{account_id}/apikeys/{key_id}"]
    /// How long a validated API key is trusted before Accounts is asked again (at most the
    /// lifetime Accounts says).
    public var authCacheSeconds = 30.0
    /// Responses at least this large are gzip-compressed when the client accepts gzip.
    public var gzipMinimumBytes = 1024

    public init() {}

    /// Reads a configuration file; keys it leaves out keep their defaults. Errors name the file
    /// and the key.
    public static func load(path: String) throws -> GatewayConfiguration {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigurationFileError(description: "cannot read gateway configuration \(path): \(error.localizedDescription)")
        }
        do {
            return try JSONDecoder().decode(GatewayConfiguration.self, from: data)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.dataCorrupted(context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw ConfigurationFileError(description: "\(path): \(key.isEmpty ? "" : key + ": ")\(context.debugDescription)")
        } catch {
            throw ConfigurationFileError(description: "\(path): \(error)")
        }
    }

    public init(from decoder: any Decoder) throws {
        let defaults = GatewayConfiguration()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        host = try container.decodeIfPresent(String.self, forKey: .host) ?? defaults.host
        port = try container.decodeIfPresent(Int.self, forKey: .port) ?? defaults.port
        upstreams = defaults.upstreams.merging(try container.decodeIfPresent([String: String].self, forKey: .upstreams) ?? [:]) { $1 }
        maxBodyBytes = try container.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? defaults.maxBodyBytes
        defaultTimeoutMilliseconds = try container.decodeIfPresent(Int.self, forKey: .defaultTimeoutMilliseconds) ?? defaults.defaultTimeoutMilliseconds
        maxTimeoutMilliseconds = try container.decodeIfPresent(Int.self, forKey: .maxTimeoutMilliseconds) ?? defaults.maxTimeoutMilliseconds
        heartbeatSeconds = try container.decodeIfPresent(Double.self, forKey: .heartbeatSeconds) ?? defaults.heartbeatSeconds
        rateLimit = try container.decodeIfPresent(RateLimit.self, forKey: .rateLimit) ?? defaults.rateLimit
        anonymousRateLimit = try container.decodeIfPresent(RateLimit.self, forKey: .anonymousRateLimit) ?? defaults.anonymousRateLimit
        listener = try container.decodeIfPresent(Listener.self, forKey: .listener) ?? defaults.listener
        cors = try container.decodeIfPresent(CORS.self, forKey: .cors) ?? defaults.cors
        forwardHeaders = try container.decodeIfPresent([String].self, forKey: .forwardHeaders) ?? defaults.forwardHeaders
        publicRoutes = try container.decodeIfPresent([String].self, forKey: .publicRoutes) ?? defaults.publicRoutes
        adminRoutes = try container.decodeIfPresent([String].self, forKey: .adminRoutes) ?? defaults.adminRoutes
        authCacheSeconds = try container.decodeIfPresent(Double.self, forKey: .authCacheSeconds) ?? defaults.authCacheSeconds
        gzipMinimumBytes = try container.decodeIfPresent(Int.self, forKey: .gzipMinimumBytes) ?? defaults.gzipMinimumBytes
    }
}

extension GatewayConfiguration.RateLimit {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        requestsPerSecond = try container.decodeIfPresent(Double.self, forKey: .requestsPerSecond) ?? 50
        burst = try container.decodeIfPresent(Double.self, forKey: .burst) ?? 100
    }
}

extension GatewayConfiguration.Listener {
    public init(from decoder: any Decoder) throws {
        let defaults = GatewayConfiguration.Listener()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        headerTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .headerTimeoutSeconds) ?? defaults.headerTimeoutSeconds
        bodyTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .bodyTimeoutSeconds) ?? defaults.bodyTimeoutSeconds
        idleTimeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .idleTimeoutSeconds) ?? defaults.idleTimeoutSeconds
        maxConnections = try container.decodeIfPresent(Int.self, forKey: .maxConnections) ?? defaults.maxConnections
        maxConnectionsPerAddress = try container.decodeIfPresent(Int.self, forKey: .maxConnectionsPerAddress) ?? defaults.maxConnectionsPerAddress
    }
}

extension GatewayConfiguration.CORS {
    public init(from decoder: any Decoder) throws {
        let defaults = GatewayConfiguration.CORS()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        allowedOrigins = try container.decodeIfPresent([String].self, forKey: .allowedOrigins) ?? defaults.allowedOrigins
        allowedHeaders = try container.decodeIfPresent([String].self, forKey: .allowedHeaders) ?? defaults.allowedHeaders
        maxAgeSeconds = try container.decodeIfPresent(Int.self, forKey: .maxAgeSeconds) ?? defaults.maxAgeSeconds
    }
}

public struct ConfigurationFileError: Error, CustomStringConvertible {
    public let description: String
}
