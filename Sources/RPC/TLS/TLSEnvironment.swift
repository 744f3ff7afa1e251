#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// TLS settings of a process from its environment, the same in every service, the gateway and
/// the container health probe (docs/security.md):
///
/// | variable | meaning |
/// | --- | --- |
/// | `FABRIKAM_TLS_CERT`, `FABRIKAM_TLS_KEY` | the server's certificate chain and key (PEM): the listener speaks TLS |
/// | `FABRIKAM_TLS_CLIENT_CA` | CA of client certificates: the listener requires one (mutual TLS) |
/// | `FABRIKAM_TLS_CA` | CA of the servers this process calls: its outgoing calls use TLS |
/// | `FABRIKAM_TLS_CLIENT_CERT`, `FABRIKAM_TLS_CLIENT_KEY` | the certificate it presents when calling (mutual TLS) |
/// | `FABRIKAM_TLS_SERVER_NAME` | the name expected in the certificates of the servers it calls (default: their host) |
///
/// Unset, everything is cleartext (the default, `make run`). A variable that is half of a pair,
/// or names a file that cannot be read, is a configuration error (exit 2).
public struct TLSEnvironment: Sendable {
    public var server: ServerTLS?
    public var client: ClientTLS?

    public static let variables = ["FABRIKAM_TLS_CERT", "FABRIKAM_TLS_KEY", "FABRIKAM_TLS_CLIENT_CA", "FABRIKAM_TLS_CA",
                                   "FABRIKAM_TLS_CLIENT_CERT", "FABRIKAM_TLS_CLIENT_KEY", "FABRIKAM_TLS_SERVER_NAME"]

    /// Reads `environment` (by default this process's); throws `TLSSetupError` naming the variable.
    public init(environment: [String: String]? = nil) throws {
        let values = environment ?? Self.processEnvironment()
        func value(_ name: String) throws -> String? {
            guard let text = values[name] else { return nil }
            guard !text.isEmpty else { throw TLSSetupError("\(name) is set but empty") }
            if name != "FABRIKAM_TLS_SERVER_NAME" {
                guard access(text, R_OK) == 0 else {
                    throw TLSSetupError("\(name)=\(text): cannot read the file (\(String(cString: strerror(errno))))")
                }
            }
            return text
        }
        let certificate = try value("FABRIKAM_TLS_CERT"), key = try value("FABRIKAM_TLS_KEY"), clientCA = try value("FABRIKAM_TLS_CLIENT_CA")
        switch (certificate, key) {
        case (let certificate?, let key?):
            server = ServerTLS(certificateChainFile: certificate, privateKeyFile: key, clientCAFile: clientCA)
        case (nil, nil):
            if clientCA != nil { throw TLSSetupError("FABRIKAM_TLS_CLIENT_CA needs FABRIKAM_TLS_CERT and FABRIKAM_TLS_KEY (mutual TLS is TLS first)") }
        default:
            throw TLSSetupError("FABRIKAM_TLS_CERT and FABRIKAM_TLS_KEY go together: set both (TLS) or neither (cleartext)")
        }
        let ca = try value("FABRIKAM_TLS_CA"), clientCertificate = try value("FABRIKAM_TLS_CLIENT_CERT")
        let clientKey = try value("FABRIKAM_TLS_CLIENT_KEY"), serverName = try value("FABRIKAM_TLS_SERVER_NAME")
        if (clientCertificate == nil) != (clientKey == nil) {
            throw TLSSetupError("FABRIKAM_TLS_CLIENT_CERT and FABRIKAM_TLS_CLIENT_KEY go together: set both or neither")
        }
        if ca != nil || clientCertificate != nil {
            client = ClientTLS(caFile: ca, certificateChainFile: clientCertificate, privateKeyFile: clientKey, serverName: serverName)
        } else if serverName != nil {
            throw TLSSetupError("FABRIKAM_TLS_SERVER_NAME is for TLS calls: set FABRIKAM_TLS_CA too")
        }
        // Read the files once now, so a bad certificate stops the process at start.
        _ = try server?.makeContext()
        _ = try client?.makeContext()
    }

    /// The settings of this process, read once (nil when invalid: `runService` has already
    /// stopped such a process with the reason).
    public static let current: TLSEnvironment? = try? TLSEnvironment()

    static func processEnvironment() -> [String: String] {
        var values: [String: String] = [:]
        for name in variables {
            if let value = getenv(name) { values[name] = String(cString: value) }
        }
        return values
    }
}
