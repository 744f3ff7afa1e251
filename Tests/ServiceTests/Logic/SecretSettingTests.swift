import Foundation
import Accounts
import MessagingNATS
@testable import ServiceKit
import Testing
import TestSupport

/// Secrets (passwords, API keys) come from the environment or, as Kubernetes and compose mount
/// them, from files (`Configuration.secret`): a clear error for every way that can go wrong, and
/// the value itself in none of them.
@Suite("Secret settings from files")
struct SecretSettingTests {
    static func configuration(_ environment: [String: String], arguments: [String] = []) throws -> Configuration {
        try Configuration(arguments: arguments, environment: environment, known: Configuration.storeFlags + Configuration.brokerFlags)
    }

    static func secretFile(_ content: String) throws -> String {
        let path = try makeTemporaryDirectory("secret").appendingPathComponent("value").path
        try Data(content.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("a file named by FABRIKAM_NAME_FILE gives the value, one trailing line break dropped")
    func fromEnvironmentFile() throws {
        let path = try Self.secretFile("s3cret-from-file\n")
        let value: String? = try Self.configuration(["FABRIKAM_STORE_PASSWORD_FILE": path]).secret("store-password")
        #expect(value == "s3cret-from-file")
        let crlf = try Self.secretFile("windows\r\n")
        let windows: String? = try Self.configuration(["FABRIKAM_STORE_PASSWORD_FILE": crlf]).secret("store-password")
        #expect(windows == "windows")
    }

    @Test("--name-file and FABRIKAM_NAME give it too; nothing configured is nil; an empty variable is unset")
    func otherSources() throws {
        let path = try Self.secretFile("from-flag")
        let fromFlag: String? = try Self.configuration([:], arguments: ["--store-password-file", path]).secret("store-password")
        #expect(fromFlag == "from-flag")
        let fromEnvironment: String? = try Self.configuration(["FABRIKAM_STORE_PASSWORD": "from-env"]).secret("store-password")
        #expect(fromEnvironment == "from-env")
        let unset: String? = try Self.configuration([:]).secret("store-password")
        #expect(unset == nil)
        let empty: String? = try Self.configuration(["FABRIKAM_STORE_PASSWORD": ""]).secret("store-password")
        #expect(empty == nil)
    }

    @Test("two sources at once are refused, naming both and not the value")
    func twoSources() throws {
        let path = try Self.secretFile("file-value")
        let error = Self.configurationError {
            try Self.configuration(["FABRIKAM_STORE_PASSWORD": "env-value", "FABRIKAM_STORE_PASSWORD_FILE": path]).secret("store-password")
        }
        #expect(error.contains("FABRIKAM_STORE_PASSWORD,") && error.contains("FABRIKAM_STORE_PASSWORD_FILE=\(path)"), "\(error)")
        #expect(!error.contains("env-value") && !error.contains("file-value"))
    }

    @Test("a missing file names the variable and the path; an empty file and a line break inside are refused")
    func badFiles() throws {
        let missing = "/nonexistent/fabrikam/\(UUID().uuidString)"
        let error = Self.configurationError {
            try Self.configuration(["FABRIKAM_BROKER_PASSWORD_FILE": missing]).secret("broker-password")
        }
        #expect(error.hasPrefix("FABRIKAM_BROKER_PASSWORD_FILE: cannot read \(missing): No such file"), "\(error)")
        let emptyFile = try Self.secretFile("\n")
        let empty = Self.configurationError { try Self.configuration(["FABRIKAM_BROKER_PASSWORD_FILE": emptyFile]).secret("broker-password") }
        #expect(empty.contains("the secret broker-password is empty"), "\(empty)")
        let twoLinesFile = try Self.secretFile("first\nsecond\n")
        let twoLines = Self.configurationError { try Self.configuration(["FABRIKAM_BROKER_PASSWORD_FILE": twoLinesFile]).secret("broker-password") }
        #expect(twoLines.contains("line break inside") && !twoLines.contains("second"), "\(twoLines)")
    }

    @Test("NATS credentials: a user with a password file; a user alone or a password alone is an error naming the setting")
    func natsCredentialSettings() throws {
        let path = try Self.secretFile("nats-pass\n")
        let both: NATSCredentials = try natsCredentials(Self.configuration(["FABRIKAM_BROKER_USER": "svc", "FABRIKAM_BROKER_PASSWORD_FILE": path]))
        #expect(both == NATSCredentials.userPassword(user: "svc", password: "nats-pass"))
        let neither: NATSCredentials = try natsCredentials(Self.configuration([:]))
        #expect(neither == NATSCredentials.none)
        let userOnly = Self.configurationError { try natsCredentials(Self.configuration(["FABRIKAM_BROKER_USER": "svc"])) }
        #expect(userOnly.contains("needs its password"), "\(userOnly)")
        let passwordOnly = Self.configurationError { try natsCredentials(Self.configuration(["FABRIKAM_BROKER_PASSWORD_FILE": path])) }
        #expect(passwordOnly.contains("without --broker-user"), "\(passwordOnly)")
    }

    /// The ConfigurationError's text that `body` throws ("no error" when it throws none).
    static func configurationError<T>(_ body: () throws -> T) -> String {
        do {
            _ = try body()
            return "no error"
        } catch let error as ConfigurationError {
            return error.description
        } catch {
            return "another error: \(error)"
        }
    }

    static let secretPostgres = ProcessInfo.processInfo.environment["FABRIKAM_TEST_POSTGRES_SECRET_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let secretPostgresPasswordFile = ProcessInfo.processInfo.environment["FABRIKAM_TEST_POSTGRES_SECRET_PASSWORD_FILE"]

    /// tools/with-postgres.sh's `secret_user` must give its password (scram-sha-256).
    @Test("PostgreSQL: the store's password from FABRIKAM_STORE_PASSWORD_FILE is sent; without it or wrong, the server refuses, and no message carries it",
          .enabled(if: secretPostgres != nil || ProcessInfo.processInfo.environment["FABRIKAM_REQUIRE_ENGINES"] == "1"))
    func postgresPasswordFromFile() throws {
        let url = try #require(Self.secretPostgres, "FABRIKAM_TEST_POSTGRES_SECRET_URL is not set: run the tests through tools/with-postgres.sh")
        let passwordFile = try #require(Self.secretPostgresPasswordFile)
        let schema = "secret_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
        let store = try serviceStore(try Self.configuration(["FABRIKAM_STORE_PASSWORD_FILE": passwordFile],
                                                            arguments: ["--store", url, "--store-schema", String(schema)]),
                                     service: "accounts", file: "unused.sqlite")
        #expect(store.engine == "postgresql")
        #expect(store.probe.problem() == nil, "the probe connects with the password from the file")
        // The pool and the migrations connect with it too: the accounts store is created in its schema.
        defer {
            if let admin = ProcessInfo.processInfo.environment["FABRIKAM_TEST_POSTGRES_URL"] {
                _ = try? runCollecting("/usr/bin/psql", [admin, "-q", "-c", "DROP SCHEMA IF EXISTS \(schema) CASCADE"])
            }
        }
        _ = try SQLAccountStore(store.location)

        let withoutPassword = try serviceStore(try Self.configuration([:], arguments: ["--store", url]), service: "accounts", file: "unused.sqlite")
        let refused = try #require(withoutPassword.probe.problem())
        #expect(refused.contains("no password supplied"), "\(refused)")

        let wrong = "wrong-\(UUID().uuidString)"
        let wrongStore = try serviceStore(try Self.configuration(["FABRIKAM_STORE_PASSWORD": wrong], arguments: ["--store", url]), service: "accounts", file: "unused.sqlite")
        let failed = try #require(wrongStore.probe.problem())
        #expect(failed.contains("password authentication failed for user \"secret_user\""), "\(failed)")
        #expect(!failed.contains(wrong))
    }
}
