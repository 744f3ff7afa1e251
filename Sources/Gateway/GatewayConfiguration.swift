import Foundation

/// Everything the gateway does that is not in the .proto files, read from a JSON file
/// (`--config FILE`, see `config/gateway.json`); every key is optional and has a default.
public struct GatewayConfiguration: Codable, Sendable {
    public struct RateLimit: Codable, Sendable {
        /// Sustained requests per second per API key, and the burst allowed above it.
        public var requestsPerSecond: Double = 50
        public var burst: Double = 100
    }

    public struct CORS: Codable, Sendable {
        /// Origins allowed to call from a browser (`*` for any).
        public var allowedOrigins: [String] = ["*"]
        public var allowedHeaders: [String] = ["authorization", "content-type", "x-api-key", "x-request-id", "traceparent", "grpc-timeout"]
        public var maxAgeSeconds: Int = 600
    }

    public var host = "127.0.0.1"
    public var port = 8080
    /// Backend addresses by service short name (the `<name>` of `fabrikam.dronedelivery.<name>.v1`).
    public var upstreams: [String: String] = [
        "accounts": "127.0.0.1:50051", "package": "127.0.0.1:50052", "dronescheduler": "127.0.0.1:50053",
        "delivery": "127.0.0.1:50054", "deliveryhistory": "127.0.0.1:50055", "ingestion": "127.0.0.1:50056",
    ]
    /// Largest request body accepted (413 above).
    public var maxBodyBytes = 1 << 20
    /// Deadline of an upstream call when the client sends no `grpc-timeout` header, and the
    /// longest one a client may ask for.
    public var defaultTimeoutMilliseconds = 10_000
    public var maxTimeoutMilliseconds = 60_000
    /// Server-streaming calls: keep-alive comment interval (SSE) or empty line (NDJSON).
    public var heartbeatSeconds = 15.0
    public var rateLimit = RateLimit()
    public var cors = CORS()
    /// Request headers passed to the services as metadata (lower case).
    public var forwardHeaders: [String] = ["accept-language", "x-user-id"]
    /// Routes callable without an API key, as "METHOD /template".
    public var publicRoutes: [String] = ["POST /v1/accounts"]
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
        cors = try container.decodeIfPresent(CORS.self, forKey: .cors) ?? defaults.cors
        forwardHeaders = try container.decodeIfPresent([String].self, forKey: .forwardHeaders) ?? defaults.forwardHeaders
        publicRoutes = try container.decodeIfPresent([String].self, forKey: .publicRoutes) ?? defaults.publicRoutes
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
