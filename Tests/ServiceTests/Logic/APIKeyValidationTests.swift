import Accounts
import DroneDeliveryAPI
import Foundation
import Gateway
import RPC
import Synchronization
import Testing
import TestSupport

/// Counts the calls a server handles, by method name.
final class CallCounter: ServerInterceptor {
    private let counts = Mutex([String: Int]())

    func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        counts.withLock { $0[context.method.name, default: 0] += 1 }
        try await next(context)
    }

    func count(_ method: String) -> Int { counts.withLock { $0[method, default: 0] } }
}

@Suite("The gateway's API key validation against a real Accounts server")
struct APIKeyValidationTests {
    @Test("requests that arrive together with a key not yet cached share one validation by Accounts, good key or bad")
    func concurrentRequestsShareOneValidation() async throws {
        let logic = AccountsServiceLogic(store: try SQLiteAccountStore(path: try makeTemporaryDirectory("auth").appendingPathComponent("accounts.sqlite").path))
        var register = AccountsV1.RegisterAccountRequest()
        register.displayName = "Contoso"
        register.contactEmail = "ops@contoso.example"
        var issue = AccountsV1.IssueApiKeyRequest()
        issue.accountId = try #require(try await logic.registerAccount(register, context: .inProcess()).account?.accountId)
        let secret = try await logic.issueApiKey(issue, context: .inProcess()).secret

        let counter = CallCounter()
        var router = Router()
        logic.register(in: &router)
        var options = RPCServer.Options()
        options.interceptors = [counter]
        let accounts = RPCServer(router: router, options: options)
        let port = try await accounts.start()
        // Accounts is real; every other upstream is a port where nothing listens, so an
        // authenticated request ends in 503 and an unauthenticated one in 401.
        var configuration = GatewayConfiguration()
        for name in configuration.upstreams.keys { configuration.upstreams[name] = "127.0.0.1:1" }
        configuration.upstreams["accounts"] = "127.0.0.1:\(port)"
        configuration.rateLimit.requestsPerSecond = 1_000_000
        configuration.rateLimit.burst = 1_000_000
        let gateway = try Gateway(configuration: configuration)

        func together(_ key: String) async -> [(status: Int, body: String)] {
            let request = GatewayRequest(method: "GET", target: "/v1/deliveries", headers: [("Authorization", "Bearer \(key)")], body: [])
            return await withTaskGroup(of: (status: Int, body: String).self) { group in
                for _ in 0..<32 {
                    group.addTask {
                        let response = await gateway.handle(request)
                        guard case .bytes(let body) = response.body else { return (response.status, "") }
                        return (response.status, String(decoding: body, as: UTF8.self))
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        let good = await together(secret)
        // 503 from the call to Delivery, not from validating the key ("cannot validate the API key now").
        #expect(good.allSatisfy { $0.status == 503 && !$0.body.contains("API key") }, "authenticated, then Delivery is unreachable: \(good[0])")
        #expect(counter.count("ValidateApiKey") == 1)
        let bad = await together("fdk_not_a_key")
        #expect(bad.allSatisfy { $0.status == 401 }, "\(bad[0])")
        #expect(counter.count("ValidateApiKey") == 2, "one more validation, for the bad key, cached as bad")
        _ = await together(secret)
        #expect(counter.count("ValidateApiKey") == 2, "both answers cached")

        await gateway.close()
        await accounts.shutdown()
    }
}
