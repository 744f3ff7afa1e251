// interop-server: the gRPC interop TestService on our runtime, for grpcio and other gRPC tools.
//
//   interop-server --port N      (127.0.0.1:N; 0 picks a free port; runs until SIGINT/SIGTERM)
//
// TLS as every service: FABRIKAM_TLS_CERT and FABRIKAM_TLS_KEY (and FABRIKAM_TLS_CLIENT_CA for
// mutual TLS) in the environment; a bad one exits 2.
//
// Prints `listening 127.0.0.1:<port>` once it accepts connections.

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import GRPCProtos
import InteropTesting
import Synchronization
import RPC
import RPCServices

var port = 0
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--port":
        guard let value = arguments.next().flatMap(Int.init) else {
            print("--port needs a number")
            exit(2)
        }
        port = value
    default:
        print("usage: interop-server [--port N]")
        exit(2)
    }
}

// The TestService, with health and reflection so other gRPC tools can be pointed at it.
var router = interopTestServiceRouter()
let health = HealthService()
health.register(in: &router)
health.setStatus(.serving, for: "grpc.testing.TestService")
ReflectionService(files: grpcProtoFiles, services: router.serviceNames + ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
    .register(in: &router)
let tls: ServerTLS?
do {
    tls = try TLSEnvironment().server
} catch {
    print("configuration: \(error)")
    exit(2)
}
let server = RPCServer(router: router, options: .defaults { $0.port = port; $0.tls = tls })
let bound = try await server.start()
print("listening 127.0.0.1:\(bound)")
fflush(nil)  // flush every stream (stdout is a C global Swift 6 will not touch)

// Wait for SIGINT or SIGTERM, then shut down gracefully.
await waitForTerminationSignal()
await server.shutdown()

