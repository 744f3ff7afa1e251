// bench-client: our RPCClient as a load generator, for the client side of `make bench-tls`:
// CALLS UnaryCalls (a 16-byte payload, a 16-byte response asked) over CONNECTIONS connections
// (one RPCClient each: a client keeps one connection per address) with CONCURRENCY calls in
// flight on each, then HANDSHAKES new connections one after another with one call each. CPU is
// this process's (getrusage, user + system), measured around the calls only (after a warm-up),
// so start-up and the first connections are not in it.
//
//   bench-client --port N [--connections C] [--concurrency M] [--calls N] [--warmup W]
//                [--handshakes K] [--ca FILE [--server-name NAME]]
//
// With --ca the connections are TLS, the server's certificate checked against FILE and against
// NAME (default: localhost), as every service's client does. Prints two lines:
//   calls CALLS_PER_SECOND CPU_US_PER_CALL
//   connect CONNECTIONS_PER_SECOND CPU_US_PER_CONNECTION      (with --handshakes > 0)

#if canImport(Glibc)
import Glibc
#endif
import GRPCProtos
import RPC
import Synchronization

var port: Int?
var connections = 16
var concurrency = 16
var calls = 100_000
var warmup = 20_000
var handshakes = 0
var caFile: String?
var serverName = "localhost"
var arguments = CommandLine.arguments.dropFirst().makeIterator()
@MainActor func number(_ name: String) -> Int {
    guard let value = arguments.next().flatMap(Int.init), value >= 0 else {
        print("\(name) needs a number")
        exit(2)
    }
    return value
}
while let argument = arguments.next() {
    switch argument {
    case "--port": port = number(argument)
    case "--connections": connections = max(1, number(argument))
    case "--concurrency": concurrency = max(1, number(argument))
    case "--calls": calls = number(argument)
    case "--warmup": warmup = number(argument)
    case "--handshakes": handshakes = number(argument)
    case "--ca": caFile = arguments.next()
    case "--server-name": serverName = arguments.next() ?? serverName
    default:
        print("usage: bench-client --port N [--connections C] [--concurrency M] [--calls N] [--warmup W] [--handshakes K] [--ca FILE [--server-name NAME]]")
        exit(2)
    }
}
guard let port else {
    print("--port is required")
    exit(2)
}

var options = RPCClient.Options()
if let caFile { options.tls = ClientTLS(caFile: caFile, serverName: serverName) }
let clientOptions = options

var request = Grpc.Testing.SimpleRequest()
request.responseSize = 16
var payload = Grpc.Testing.Payload()
payload.body = Array("0123456789abcdef".utf8)
request.payload = payload
let theRequest = request
typealias UnaryCall = Grpc.Testing.TestService.Method.UnaryCall

/// This process's CPU time so far, in microseconds.
func cpuMicroseconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
}

/// `x` with one decimal (no Foundation here).
func tenths(_ x: Double) -> String {
    let scaled = Int((x * 10).rounded())
    return "\(scaled / 10).\(scaled % 10)"
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

/// Calls issued so far, shared by the tasks (an `Atomic` cannot be captured by their closures).
final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

/// `total` calls spread over the clients, `concurrency` in flight on each.
func drive(_ clients: [RPCClient], concurrency: Int, request: Grpc.Testing.SimpleRequest, total: Int) async throws {
    let issued = Counter()
    try await withThrowingTaskGroup(of: Void.self) { group in
        for client in clients {
            for _ in 0..<concurrency {
                group.addTask {
                    while issued.value.wrappingAdd(1, ordering: .relaxed).oldValue < total {
                        let response = try await client.unary(UnaryCall.self, request)
                        let size = response.payload?.body.count ?? 0
                        guard size == 16 else { throw RPCError(.internal, "a response of \(size) bytes") }
                    }
                }
            }
        }
        try await group.waitForAll()
    }
}

do {
    let clients = (0..<connections).map { _ in RPCClient(host: "127.0.0.1", port: port, options: clientOptions) }
    try await drive(clients, concurrency: concurrency, request: theRequest, total: max(warmup, connections * concurrency))
    let cpuBefore = cpuMicroseconds()
    let start = ContinuousClock.now
    try await drive(clients, concurrency: concurrency, request: theRequest, total: calls)
    let elapsed = seconds(since: start)
    let cpu = cpuMicroseconds() - cpuBefore
    print("calls \(Int((Double(calls) / elapsed).rounded())) \(tenths(cpu / Double(max(calls, 1))))")
    for client in clients { await client.close() }

    if handshakes > 0 {
        let cpuBefore = cpuMicroseconds()
        let start = ContinuousClock.now
        for _ in 0..<handshakes {
            let client = RPCClient(host: "127.0.0.1", port: port, options: clientOptions)
            _ = try await client.unary(UnaryCall.self, theRequest)
            await client.close()
        }
        let elapsed = seconds(since: start)
        let cpu = cpuMicroseconds() - cpuBefore
        print("connect \(Int((Double(handshakes) / elapsed).rounded())) \(tenths(cpu / Double(handshakes)))")
    }
} catch {
    print("bench-client: \(error)")
    exit(1)
}
fflush(nil)
exit(0)
