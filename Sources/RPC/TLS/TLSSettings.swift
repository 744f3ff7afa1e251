#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOSSL
import Synchronization

/// TLS on a server: its certificate chain and private key (PEM files), and optionally the CA
/// whose certificates clients must present (mutual TLS). The files are read again when they
/// change on disk: connections accepted after a rotation get the new certificate, open ones
/// keep theirs.
public struct ServerTLS: Sendable {
    /// PEM: the server's certificate first, then any intermediates.
    public var certificateChainFile: String
    /// PEM: the certificate's private key.
    public var privateKeyFile: String
    /// PEM: the CA(s) that issue client certificates. Set, every client must present a
    /// certificate that chains to one of them; nil, clients present none.
    public var clientCAFile: String?
    /// ALPN protocols offered, in order of preference. The RPC server speaks only HTTP/2.
    public var applicationProtocols = ["h2"]

    public init(certificateChainFile: String, privateKeyFile: String, clientCAFile: String? = nil) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.clientCAFile = clientCAFile
    }

    var files: [String] { [certificateChainFile, privateKeyFile] + (clientCAFile.map { [$0] } ?? []) }

    /// A TLS context made from the files now (throws `TLSSetupError` naming the file at fault).
    public func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try TLSFiles.certificates(certificateChainFile, role: "certificate chain").map { .certificate($0) },
            privateKey: .privateKey(try TLSFiles.privateKey(privateKeyFile)))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = applicationProtocols
        configuration.shutdownTimeout = TLSFiles.closeNotifyWait
        if let clientCAFile {
            configuration.trustRoots = .certificates(try TLSFiles.certificates(clientCAFile, role: "client CA"))
            // A client certificate is required and must chain to the CA; clients have no name to check.
            configuration.certificateVerification = .noHostnameVerification
        }
        return try TLSFiles.context(configuration, files: files)
    }
}

/// TLS on a client: whom to trust, which certificate to present (mutual TLS), and which name
/// the server's certificate must carry.
public struct ClientTLS: Sendable {
    /// PEM: the CA(s) that issue server certificates; nil trusts the system's store.
    public var caFile: String?
    /// PEM: the client certificate chain and key presented to servers that ask for one.
    public var certificateChainFile: String?
    public var privateKeyFile: String?
    /// The name sent as SNI and checked against the server's certificate; nil takes the target's
    /// host name (an IP address is then checked against the certificate's IP SANs, without SNI).
    public var serverName: String?
    /// Check the server's certificate (chain and name). Off only for local experiments
    /// (`dronectl --insecure`): anyone in the path could then read and change the traffic.
    public var verifiesServer = true
    /// ALPN protocols offered; gRPC needs `h2`.
    public var applicationProtocols = ["h2"]

    public init(caFile: String? = nil, certificateChainFile: String? = nil, privateKeyFile: String? = nil,
                serverName: String? = nil, verifiesServer: Bool = true) {
        self.caFile = caFile
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.serverName = serverName
        self.verifiesServer = verifiesServer
    }

    var files: [String] { [caFile, certificateChainFile, privateKeyFile].compactMap { $0 } }

    /// SNI and the name the server's certificate must carry when connecting to `host`:
    /// `serverName`, else the host (an IP address is checked against the certificate's IP SANs,
    /// without SNI).
    func serverHostname(connectingTo host: String) -> String? {
        if let serverName { return serverName }
        return (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }

    public func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = applicationProtocols
        configuration.shutdownTimeout = TLSFiles.closeNotifyWait
        if let caFile { configuration.trustRoots = .certificates(try TLSFiles.certificates(caFile, role: "CA")) }
        if !verifiesServer { configuration.certificateVerification = .none }
        switch (certificateChainFile, privateKeyFile) {
        case (let chain?, let key?):
            configuration.certificateChain = try TLSFiles.certificates(chain, role: "client certificate").map { .certificate($0) }
            configuration.privateKey = .privateKey(try TLSFiles.privateKey(key))
        case (nil, nil):
            break
        default:
            throw TLSSetupError("a client certificate needs both its certificate file and its key file")
        }
        return try TLSFiles.context(configuration, files: files)
    }
}

/// A TLS file that cannot be used, named with the reason.
public struct TLSSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

enum TLSFiles {
    /// How long a closing connection waits for the peer's close_notify after sending its own.
    /// HTTP/2 closes only after GOAWAY and the last stream's END_STREAM, so the peer's
    /// close_notify guards against no truncation there (RFC 8446 §6.1 lets a party close without
    /// it). grpc C++ never sends one back: with swift-nio-ssl's default of 5 s, every close of
    /// a connection to a grpc C++ or grpcio server waited 5 s (measured with bench-client).
    static let closeNotifyWait = TimeAmount.milliseconds(100)

    static func certificates(_ path: String, role: String) throws -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw TLSSetupError("cannot read the \(role) file \(path): \(readable(error, path: path))")
        }
        guard !certificates.isEmpty else { throw TLSSetupError("the \(role) file \(path) holds no PEM certificate") }
        return certificates
    }

    static func privateKey(_ path: String) throws -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw TLSSetupError("cannot read the private key file \(path): \(readable(error, path: path))")
        }
    }

    static func context(_ configuration: TLSConfiguration, files: [String]) throws -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            // Typically a key that does not belong to the certificate (a rotation half written).
            throw TLSSetupError("cannot use \(files.joined(separator: ", ")): \(error)")
        }
    }

    private static func readable(_ error: Error, path: String) -> String {
        access(path, R_OK) == 0 ? "not valid PEM (\(error))" : "cannot open it (\(String(cString: strerror(errno))))"
    }
}

/// A TLS context that follows its files: `current()` looks at their modification time, size and
/// inode (cheap `stat` calls) and makes a new context when one changed, so certificates rotated
/// on disk (a renewed certificate, a Kubernetes secret's symlink swap) are used by the next
/// connection without a restart. A set of files that cannot be used (say, the new certificate
/// written but not yet its key) keeps the last good context, and is tried again on the next
/// connection.
public final class ReloadingTLSContext: Sendable {
    private let files: [String]
    private let make: @Sendable () throws -> NIOSSLContext
    private let state: Mutex<State>

    private struct State {
        var stamps: [FileStamp]
        var context: NIOSSLContext
        var reloads = 0
        var lastError: String?
    }

    struct FileStamp: Equatable {
        var modified: timespec
        var size: Int
        var inode: UInt
        static func == (a: Self, b: Self) -> Bool {
            a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec && a.size == b.size && a.inode == b.inode
        }
    }

    /// Reads the files now: a file that cannot be used throws (at startup, a configuration error).
    public init(files: [String], make: @escaping @Sendable () throws -> NIOSSLContext) throws {
        self.files = files
        self.make = make
        let stamps = Self.stamps(files)
        self.state = Mutex(State(stamps: stamps, context: try make()))
    }

    public convenience init(_ tls: ServerTLS) throws {
        try self.init(files: tls.files, make: { try tls.makeContext() })
    }

    public convenience init(_ tls: ClientTLS) throws {
        try self.init(files: tls.files, make: { try tls.makeContext() })
    }

    /// The context for a new connection: made again first if a file changed since the last one.
    public func current() -> NIOSSLContext {
        let now = Self.stamps(files)
        return state.withLock { state in
            guard now != state.stamps else { return state.context }
            do {
                state.context = try make()
                state.stamps = now
                state.reloads += 1
                state.lastError = nil
            } catch {
                state.lastError = "\(error)"
            }
            return state.context
        }
    }

    /// How many times the files were read again after a change (for logs and tests).
    public var reloads: Int { state.withLock { $0.reloads } }
    /// Why the last attempt to read changed files failed (nil once one succeeds).
    public var lastReloadError: String? { state.withLock { $0.lastError } }

    static func stamps(_ files: [String]) -> [FileStamp] {
        files.map { path in
            var info = stat()
            guard stat(path, &info) == 0 else { return FileStamp(modified: timespec(), size: -1, inode: 0) }
            #if canImport(Darwin)
            return FileStamp(modified: info.st_mtimespec, size: Int(info.st_size), inode: UInt(info.st_ino))
            #else
            return FileStamp(modified: info.st_mtim, size: Int(info.st_size), inode: UInt(info.st_ino))
            #endif
        }
    }
}
