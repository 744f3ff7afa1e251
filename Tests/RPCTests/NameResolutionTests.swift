#if canImport(Glibc)
import Glibc
#endif
import GRPCProtos
import NIOCore
import NIOPosix
import ProtobufKit
@testable import RPC
import Synchronization
import Testing
import TestSupport

/// How the client resolves its target name (issue 12, A3): off the event loops and Swift's
/// cooperative pool, keeping what works when a lookup fails, balancing over every address, and
/// looking again soon (but not too often) after a connection fails. The lookup is replaced by a
/// scripted one; everything else is the real client against real servers on 127.0.0.1.
@Suite("Client name resolution", .serialized)
struct NameResolutionTests {
    /// A lookup that answers from a script (the last answer repeats) and records each call and
    /// the thread it ran on.
    final class ScriptedLookup: Sendable {
        enum Answer: Sendable {
            case addresses([SocketAddress])
            case failure
        }
        let answers: [Answer]
        let calls = Mutex<[String]>([])
        init(_ answers: [Answer]) { self.answers = answers }

        var count: Int { calls.withLock { $0.count } }

        func lookup(_ host: String, _ port: Int) throws -> [SocketAddress] {
            let index = calls.withLock { calls in
                calls.append(Self.currentThreadName())
                return calls.count - 1
            }
            switch answers[min(index, answers.count - 1)] {
            case .addresses(let addresses): return addresses
            case .failure: throw RPCError(.unavailable, "scripted lookup failure")
            }
        }

        /// The name of the thread this runs on (NIO names its threads: "NIO-ELT-..." for event
        /// loops, "SGLTN-TP-#..." for the blocking pool); the cooperative pool's are unnamed.
        static func currentThreadName() -> String {
            // The kernel's copy of the thread's name (pthread_getname_np is not importable here).
            var buffer = [UInt8](repeating: 0, count: 64)
            let descriptor = open("/proc/thread-self/comm", O_RDONLY)
            let count = descriptor < 0 ? 0 : read(descriptor, &buffer, buffer.count)
            if descriptor >= 0 { close(descriptor) }
            let name = String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self).trimmingSuffix("\n")
            return MultiThreadedEventLoopGroup.currentEventLoop != nil ? "event loop \(name)" : name
        }
    }

    static func client(_ lookup: ScriptedLookup, interval: Duration = .seconds(3600), minInterval: Duration = .seconds(3600)) -> RPCClient {
        RPCClient(host: "backend.test", port: 50_000, options: .defaults {
            $0.resolution.interval = interval
            $0.resolution.minInterval = minInterval
            $0.resolution.lookup = { try lookup.lookup($0, $1) }
        })
    }

    static func echoServer(counts: Shared<[Int: Int]>? = nil, index: Int = 0) async throws -> (RPCServer, SocketAddress) {
        var router = Router()
        router.unary(Methods.EmptyCall.self) { request, _ in
            counts?.withLock { $0[index, default: 0] += 1 }
            return request
        }
        let server = RPCServer(router: router)
        let port = try await server.start()
        return (server, try SocketAddress(ipAddress: "127.0.0.1", port: port))
    }

    /// An address nothing listens on: a port from `freePort()`, below the ephemeral range. A port
    /// bound as port 0 and let go is an ephemeral one, which an outgoing connection or another
    /// test's listener may take before the test is done with it (the dead address then answers,
    /// or a server the test starts on it cannot bind).
    static func deadAddress() async throws -> SocketAddress {
        try SocketAddress(ipAddress: "127.0.0.1", port: try freePort())
    }

    @Test("getaddrinfo runs on NIO's blocking pool, never on an event loop or the cooperative pool")
    func lookupRunsOnTheBlockingPool() async throws {
        let (server, address) = try await Self.echoServer()
        let lookup = ScriptedLookup([.addresses([address])])
        // Looked up again on every call (in the background), to see several lookups.
        let client = Self.client(lookup, interval: .zero, minInterval: .zero)
        for _ in 0..<5 { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
        // Also from a task that prefers an event loop as its executor (as the gateway's do),
        // once no lookup is running, so that this call starts one.
        for _ in 0..<200 where client.pool.withLock({ $0.resolution != nil }) { try await Task.sleep(for: .milliseconds(10)) }
        let before = lookup.count
        let executor = EventLoopTaskExecutor(MultiThreadedEventLoopGroup.singleton.next())
        _ = try await Task(executorPreference: executor) {
            try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        }.value
        for _ in 0..<200 where lookup.count == before { try await Task.sleep(for: .milliseconds(10)) }
        let threads = lookup.calls.withLock { $0 }
        #expect(threads.count > before && before >= 2, "\(before) lookups, then \(threads.count)")
        #expect(threads.allSatisfy { $0.hasPrefix("SGLTN-TP-#") }, "lookups ran on \(threads)")
        await client.close()
        await server.shutdown()
    }

    @Test("a failed or empty lookup keeps the addresses and connections that work")
    func failedLookupKeepsWorkingAddresses() async throws {
        let (server, address) = try await Self.echoServer()
        let lookup = ScriptedLookup([.addresses([address]), .failure, .addresses([]), .failure])
        let client = Self.client(lookup, interval: .zero, minInterval: .zero)
        for _ in 0..<10 {
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
            try await Task.sleep(for: .milliseconds(5))  // lets the background lookup finish
        }
        for _ in 0..<200 where lookup.count < 4 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(lookup.count >= 4, "the failing lookups ran")
        _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        #expect(client.endpoints == [address])
        await client.close()
        await server.shutdown()
    }

    @Test("a name with several addresses: calls are spread round-robin over all of them")
    func severalAddressesAreBalanced() async throws {
        let counts = Shared([Int: Int]())
        let (first, firstAddress) = try await Self.echoServer(counts: counts, index: 0)
        let (second, secondAddress) = try await Self.echoServer(counts: counts, index: 1)
        let client = Self.client(ScriptedLookup([.addresses([firstAddress, secondAddress])]))
        for _ in 0..<12 { _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
        #expect(counts.withLock { $0 } == [0: 6, 1: 6])
        await client.close()
        await first.shutdown()
        await second.shutdown()
    }

    @Test("a replaced endpoint: the only connection closed and the name moved; the next call goes to the new address, none fails")
    func replacedEndpoint() async throws {
        let (old, oldAddress) = try await Self.echoServer()
        let (new, newAddress) = try await Self.echoServer()
        // As a stopped container's replica: its server goes away and the name answers with
        // another address. With a minimum interval of zero the lookup is due at once; the call
        // must not try the gone address (here refused; in a container network, a connect timeout).
        let moving = ScriptedLookup([.addresses([oldAddress]), .addresses([newAddress])])
        let client = Self.client(moving, minInterval: .zero)
        _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        await old.shutdown()
        let noticed = try await waitUntil { client.pool.withLock { $0.connections.isEmpty } }
        #expect(noticed, "the client never saw its connection close")
        _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        #expect(client.endpoints == [newAddress])
        await client.close()
        await new.shutdown()
    }

    /// An address whose connection attempts hang, as a stopped container's in a container
    /// network: a listener with a backlog of 0 whose queue is filled and never accepted, so the
    /// kernel drops further SYNs. Returns the address and the descriptors to close.
    static func blackHole() throws -> (SocketAddress, [Int32]) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                guard bind(listener, raw, length) == 0, listen(listener, 0) == 0, getsockname(listener, raw, &length) == 0 else {
                    throw RPCError(.internal, "black hole: \(String(cString: strerror(errno)))")
                }
            }
        }
        var descriptors = [listener]
        for _ in 0..<3 {  // more than the queue holds; non-blocking, so the extra ones just wait
            let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, length) } }
            descriptors.append(filler)
        }
        usleep(100_000)  // the handshakes of the fillers that fit
        return (try SocketAddress(ipAddress: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port))), descriptors)
    }

    @Test("an address whose connects hang does not hold up a call another address can serve: both are tried at once")
    func hangingAddressDoesNotHoldUpCalls() async throws {
        let (hole, descriptors) = try Self.blackHole()
        defer { descriptors.forEach { _ = close($0) } }
        let (server, live) = try await Self.echoServer()
        // The hanging address first: round-robin tries it first.
        let client = RPCClient(host: "backend.test", port: 50_000, options: .defaults {
            $0.resolution.interval = .seconds(3600)
            $0.resolution.minInterval = .seconds(3600)
            $0.resolution.lookup = { _, _ in [hole, live] }
            $0.connectTimeout = .seconds(30)
        })
        // Tried one after the other, the first call would wait for its deadline on the hole.
        for _ in 0..<4 {
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty(), options: CallOptions(timeout: .seconds(10)))
        }
        await client.close()
        await server.shutdown()
    }

    @Test("a failed connection makes the client look the name up again soon, not on every call")
    func reresolutionAfterConnectionFailure() async throws {
        let dead = try await Self.deadAddress()
        let (server, live) = try await Self.echoServer()
        // The name first points at an address where nothing listens, then at the server. The
        // periodic interval is an hour: only the failure can bring the second lookup.
        let moving = ScriptedLookup([.addresses([dead]), .addresses([live])])
        let client = Self.client(moving, minInterval: .milliseconds(300))
        // The first call finds only the dead address. It is usually UNAVAILABLE, but the call's
        // one transparent retry (the connection failed, so nothing was sent) may come after the
        // minimum interval on a loaded machine and already reach the new address: both outcomes
        // are right, and the lookup count below holds either way.
        do {
            _ = try await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())
        } catch let error as RPCError {
            #expect(error.code == .unavailable)
        }
        let succeeded = try await waitUntil { (try? await client.unary(Methods.EmptyCall.self, Grpc.Testing.Empty())) != nil }
        #expect(succeeded, "the client never found the new address")
        // At least the one lookup the failure brought (more when the retries outlast the 300 ms
        // minimum on a loaded machine); "not on every call" is the rate-limited half below.
        #expect(moving.count >= 2)
        await client.close()

        // Rate limited: with a minimum interval of an hour, failing calls bring no new lookup.
        // A lookup starts inside the call that finds it due (`pool.resolution` is set before the
        // call goes on), so once the first lookup's answer is taken in, "no lookup started" is
        // what the pool says after the calls: nothing to wait for, no sleep.
        let stuck = ScriptedLookup([.addresses([dead])])
        let limited = Self.client(stuck)
        await #expect(throws: RPCError.self) { _ = try await limited.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
        let firstLookupDone = try await waitUntil { limited.pool.withLock { $0.resolution == nil } }
        #expect(firstLookupDone)
        for _ in 0..<20 {
            await #expect(throws: RPCError.self) { _ = try await limited.unary(Methods.EmptyCall.self, Grpc.Testing.Empty()) }
        }
        #expect(limited.pool.withLock { $0.resolution == nil }, "a failing call started a lookup")
        #expect(stuck.count == 1)
        await server.shutdown()
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
