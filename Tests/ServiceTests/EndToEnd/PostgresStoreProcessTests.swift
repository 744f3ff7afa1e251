import Foundation
import RPC
import DroneDeliveryAPI
import ServiceKit
import Testing
import TestSupport

/// A service chooses its store by configuration: package-service with FABRIKAM_STORE set to the
/// test PostgreSQL (tools/with-postgres.sh) keeps its packages there, not in its data folder.
/// Runs when FABRIKAM_TEST_POSTGRES_URL is set; with FABRIKAM_REQUIRE_ENGINES=1 a missing URL fails.
@Suite("A service on PostgreSQL, chosen by configuration")
struct PostgresStoreProcessTests {
    static let url = ProcessInfo.processInfo.environment["FABRIKAM_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let required = ProcessInfo.processInfo.environment["FABRIKAM_REQUIRE_ENGINES"] == "1"

    @Test("package-service with FABRIKAM_STORE=postgresql://…: a package put by one process is read by another with an empty data folder; no SQLite file is made",
          .enabled(if: url != nil || required))
    func packageServiceOnPostgres() async throws {
        guard let url = Self.url else {
            Issue.record("FABRIKAM_TEST_POSTGRES_URL is not set but FABRIKAM_REQUIRE_ENGINES=1: run the tests through tools/with-postgres.sh")
            return
        }
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let environment = ["FABRIKAM_STORE": url, "FABRIKAM_STORE_SCHEMA": String(schema), "FABRIKAM_STORE_POOL_SIZE": "2"]
        defer { _ = try? runCollecting("/usr/bin/psql", [url, "-q", "-c", "DROP SCHEMA IF EXISTS \(schema) CASCADE"]) }

        let writer = try ServiceProcess("package-service", port: try freePort(), environment: environment)
        try await writer.start()
        var package = PackageV1.Package()
        package.packageId = "pg-1"
        package.size = .medium
        package.weight = 3
        package.ownerId = "acct"
        var put = PackageV1.PutPackageRequest()
        put.package = package
        let created = try await PackageV1.PackageService.Client(writer.client).putPackage(put, options: CallOptions(timeout: .seconds(10)))
        #expect(created.created)
        #expect(try await writer.health() == .serving)
        let files = try FileManager.default.contentsOfDirectory(atPath: writer.dataDirectory.path)
        #expect(!files.contains("package.sqlite"), "the store is PostgreSQL, not a file: \(files)")
        await writer.stop()

        let reader = try ServiceProcess("package-service", port: try freePort(), environment: environment)
        try await reader.start()
        var get = PackageV1.GetPackageRequest()
        get.packageId = "pg-1"
        let read = try await PackageV1.PackageService.Client(reader.client).getPackage(get, options: CallOptions(timeout: .seconds(10)))
        #expect(read.weight == 3)
        #expect(read.ownerId == "acct")
        await reader.stop()
    }

    @Test("a --store that is neither sqlite nor a postgresql:// URL stops the service with exit status 2")
    func badStoreIsAConfigurationError() async throws {
        let service = try ServiceProcess("package-service", port: try freePort(), environment: ["FABRIKAM_STORE": "mysql://x"])
        try? await service.start()
        try await waitFor("the process to exit", timeout: .seconds(30)) { !service.process.isRunning }
        #expect(service.process.terminationStatus == 2)
        #expect(service.output.contains("--store must be sqlite or a postgresql:// URL"), "\(service.output)")
        await service.stop()
    }
}
