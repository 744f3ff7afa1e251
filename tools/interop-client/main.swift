// interop-client: runs the gRPC interop test cases with our client against a TestService server.
//
//   interop-client --host 127.0.0.1 --port N [--test_case all|name,name,...]
//
// Prints `ok NAME` or `FAIL NAME: reason` per case and `N passed, M failed`; exits 1 on failure.

#if canImport(Glibc)
import Glibc
#endif
import InteropTesting
import RPC

var host = "127.0.0.1"
var port: Int?
var cases = ["all"]
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--host": host = arguments.next() ?? host
    case "--port": port = arguments.next().flatMap(Int.init)
    case "--test_case": cases = (arguments.next() ?? "all").split(separator: ",").map(String.init)
    default:
        print("usage: interop-client --host H --port N [--test_case all|a,b]")
        exit(2)
    }
}
guard let port else {
    print("--port is required")
    exit(2)
}
let known = Set(InteropCases.all.map(\.name))
if let unknown = cases.first(where: { $0 != "all" && !known.contains($0) }) {
    print("unknown test case \(unknown); known: \(known.sorted().joined(separator: ", "))")
    exit(2)
}
let client = RPCClient(host: host, port: port)
let (passed, failed) = await InteropCases.run(cases, client: client) { print($0) }
await client.close()
print("\(passed) passed, \(failed) failed")
exit(failed == 0 ? 0 : 1)
