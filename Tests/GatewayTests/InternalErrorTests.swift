import DroneDeliveryAPI
import Foundation
import RPC
import Storage
import Testing

/// No SQL or other internal error text reaches a client: a service whose store fails answers
/// INTERNAL with the request id (the text is in its log), and the gateway does the same with
/// whatever internal text a service lets through.
@Suite("Internal errors: INTERNAL with the request id, never the database's text")
struct InternalErrorTests {
    @Test("a broken store (its table dropped underneath the service): the service answers INTERNAL with the request id, no SQL; so does the gateway")
    func brokenStore() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        #expect(await system.http("PUT", "/v1/packages/pkg-1", body: #"{"size":"PACKAGE_SIZE_SMALL","weight":1}"#, key: business.key).status == 201)
        // Break the package store for real: another connection drops its table.
        let vandal = try SQLiteDatabase(path: system.packageStorePath, migrations: [])
        try await vandal.write { try $0.execute("DROP TABLE packages") }

        // The service itself, called directly: INTERNAL naming the caller's request id.
        var request = PackageV1.GetPackageRequest()
        request.packageId = "pkg-1"
        // A bound against a hang: under load 5 s could pass before the INTERNAL answer came.
        var options = CallOptions(timeout: .seconds(60))
        options.metadata.add("x-request-id", "req-direct-2")
        do {
            _ = try await system.packages.getPackage(request, options: options)
            Issue.record("the broken store answered")
        } catch let error as RPCError {
            #expect(error.code == .internal)
            #expect(error.message.contains("request id req-direct-2") && !error.message.contains("SQL") && !error.message.contains("table"), "\(error.message)")
        }

        let answer = await system.http("GET", "/v1/packages/pkg-1", key: business.key, headers: [("x-request-id", "req-broken-1")])
        #expect(answer.status == 500 && answer.json["code"] as? Int == 13, "\(answer)")
        #expect((answer.json["message"] as? String ?? "").contains("request id req-broken-1"), "\(answer)")
        for text in ["SQLite", "sqlite", "SELECT", "no such table", "packages"] {
            #expect(!answer.body.contains(text), "\(text) in \(answer.body)")
        }
        await system.stop()
    }

    @Test("a service that lets internal text through (a stored row that does not decode, DATA_LOSS): the gateway answers INTERNAL with its request id")
    func gatewayHidesWhatAServiceLetsThrough() async throws {
        let system = try await InProcessSystem(servicesHideInternalErrors: false)
        let business = try await system.register("Fabrikam")
        #expect(await system.http("PUT", "/v1/packages/pkg-1", body: #"{"size":"PACKAGE_SIZE_SMALL","weight":1}"#, key: business.key).status == 201)
        let vandal = try SQLiteDatabase(path: system.packageStorePath, migrations: [])
        try await vandal.write { try $0.run("UPDATE packages SET data = x'ffffffff'") }
        // Without the gateway's own check the client would read "stored package does not decode: ...".
        var request = PackageV1.GetPackageRequest()
        request.packageId = "pkg-1"
        let passed = await #expect(throws: RPCError.self) { _ = try await system.packages.getPackage(request) }
        #expect(passed?.code == .dataLoss && passed?.message.contains("does not decode") == true, "\(String(describing: passed))")

        let answer = await system.http("GET", "/v1/packages/pkg-1", key: business.key, headers: [("x-request-id", "req-loss-3")])
        #expect(answer.status == 500 && answer.json["code"] as? Int == 13, "\(answer)")
        #expect((answer.json["message"] as? String ?? "") == "internal error (request id req-loss-3); the details are in the gateway's log", "\(answer)")
        #expect(answer.header("x-request-id") == "req-loss-3")
        await system.stop()
    }
}
