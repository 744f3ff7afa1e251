// health-probe: the container images' health check. Asks a process on this host whether it
// serves, and exits 0 if it does, 1 if it does not or cannot be reached, 2 on a usage error.
//
//   health-probe [--port N] [--service NAME] [--http-path PATH] [--timeout-ms N]
//
// gRPC (the default): grpc.health.v1.Health/Check on 127.0.0.1:PORT, SERVING or not; NOT_SERVING
// while the process drains after SIGTERM. With --http-path (the gateway, which speaks JSON/HTTP):
// GET PATH over HTTP/1.1, 200 or not. Each flag can also come from the environment
// (FABRIKAM_PORT, FABRIKAM_PROBE_SERVICE, FABRIKAM_PROBE_HTTP_PATH), which is how the image's
// HEALTHCHECK reaches every service with one line: the image sets FABRIKAM_PORT.
//
// Deliberately without Foundation, so the binary stays small in every image. Kubernetes needs none
// of this: its probes speak gRPC health themselves (deploy/k8s).
#if canImport(Glibc)
import Glibc
#endif
import GRPCProtos
import RPC

struct ProbeSettings {
    var port = 0
    var service = ""
    var httpPath = ""
    var timeoutMilliseconds = 1000

    /// Flags win over FABRIKAM_* variables; a usage error names what was wrong.
    static func parse(_ arguments: [String]) -> Result<ProbeSettings, UsageError> {
        var values: [String: String] = [:]
        let environmentNames = ["port": "FABRIKAM_PORT", "service": "FABRIKAM_PROBE_SERVICE",
                                "http-path": "FABRIKAM_PROBE_HTTP_PATH", "timeout-ms": "FABRIKAM_PROBE_TIMEOUT_MS"]
        for (flag, variable) in environmentNames {
            if let value = getenv(variable) { values[flag] = String(cString: value) }
        }
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            let name = argument.hasPrefix("--") ? String(argument.dropFirst(2)) : ""
            guard environmentNames[name] != nil else { return .failure(UsageError("unknown argument \(argument)")) }
            guard let value = iterator.next() else { return .failure(UsageError("\(argument) needs a value")) }
            values[name] = value
        }
        var settings = ProbeSettings()
        guard let port = Int(values["port"] ?? ""), (1...65535).contains(port) else {
            return .failure(UsageError("--port (or FABRIKAM_PORT) must be a port number, got \"\(values["port"] ?? "")\""))
        }
        settings.port = port
        settings.service = values["service"] ?? ""
        settings.httpPath = values["http-path"] ?? ""
        if let text = values["timeout-ms"] {
            guard let timeout = Int(text), timeout > 0 else { return .failure(UsageError("--timeout-ms must be a positive integer, got \"\(text)\"")) }
            settings.timeoutMilliseconds = timeout
        }
        return .success(settings)
    }
}

struct UsageError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// One line on standard error (file descriptor 2: C's `stderr` is a global Swift 6 refuses).
func report(_ message: String) {
    let line = Array("health-probe: \(message)\n".utf8)
    _ = line.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String, status: Int32) -> Never {
    report(message)
    exit(status)
}

/// grpc.health.v1.Health/Check: true when the answer is SERVING.
func checkGRPC(_ settings: ProbeSettings) async -> Bool {
    // Not closed: the process exits right after the answer.
    // A service serving TLS (FABRIKAM_TLS_CERT in the same container) is asked over TLS, trusting
    // FABRIKAM_TLS_CA and presenting FABRIKAM_TLS_CLIENT_CERT when it requires client certificates.
    let tls = TLSEnvironment.current
    let client = RPCClient(host: "127.0.0.1", port: settings.port, options: .defaults {
        if tls?.server != nil { $0.tls = tls?.client ?? ClientTLS(verifiesServer: false) }
    })
    var request = Grpc.Health.V1.HealthCheckRequest()
    request.service = settings.service
    do {
        let answer = try await Grpc.Health.V1.Health.Client(client)
            .check(request, options: CallOptions(timeout: .milliseconds(settings.timeoutMilliseconds)))
        if answer.status == .serving { return true }
        report("127.0.0.1:\(settings.port) answers \(answer.status)")
    } catch {
        report("127.0.0.1:\(settings.port): \(error)")
    }
    return false
}

/// GET `httpPath` over HTTP/1.1 on a plain socket: true when the status line says 200.
func checkHTTP(_ settings: ProbeSettings) -> Bool {
    let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socketDescriptor >= 0 else { return false }
    defer { close(socketDescriptor) }
    var timeout = timeval(tv_sec: settings.timeoutMilliseconds / 1000, tv_usec: (settings.timeoutMilliseconds % 1000) * 1000)
    setsockopt(socketDescriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(socketDescriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(settings.port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        report("127.0.0.1:\(settings.port): connection failed (errno \(errno))")
        return false
    }
    let request = Array("GET \(settings.httpPath) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    guard write(socketDescriptor, request, request.count) == request.count else { return false }
    var buffer = [UInt8](repeating: 0, count: 64)
    let count = read(socketDescriptor, &buffer, buffer.count)
    guard count > 0 else { return false }
    let statusLine = String(decoding: buffer[..<count], as: UTF8.self).prefix { $0 != "\r" }
    if statusLine.hasPrefix("HTTP/1.1 200 ") { return true }
    report("GET \(settings.httpPath) answered \(statusLine)")
    return false
}

let settings: ProbeSettings
switch ProbeSettings.parse(Array(CommandLine.arguments.dropFirst())) {
case .success(let parsed): settings = parsed
case .failure(let error): fail(error.message, status: 2)
}
let serving = settings.httpPath.isEmpty ? await checkGRPC(settings) : checkHTTP(settings)
exit(serving ? 0 : 1)
