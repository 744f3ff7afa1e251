@testable import DroneCTL
import Foundation
import ProtobufKit
import RPC
import ServiceKit
import Testing
import TestSupport

/// Where a call's settings come from: flags over the environment over the configuration file.
@Suite("Settings and profiles")
struct SettingsTests {
    static func configFile(_ json: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-config-\(UUID().uuidString).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let delivery = ServiceIdentity(fullName: "fabrikam.dronedelivery.delivery.v1.DeliveryService", command: "delivery")

    static let file = """
        {"currentContext": "local",
         "contexts": {
           "local": {"servers": {"delivery": "127.0.0.1:1001", "default": "127.0.0.1:1000"}, "gateway": "127.0.0.1:8080",
                     "apiKey": "file-key", "headers": ["x-team: ops", "x-source: file"], "timeout": "5s"},
           "public": {"transport": "http", "gateway": "http://gw.example:9000", "apiKey": "public-key"}}}
        """

    @Test("the current context gives per-service addresses, headers, API key and timeout")
    func fromFile() throws {
        let path = try Self.configFile(Self.file)
        let settings = try CallSettings.resolve(CallFlags.unset, service: Self.delivery, environment: ["DRONECTL_CONFIG": path])
        #expect(settings.endpoints == [Endpoint(host: "127.0.0.1", port: 1001)])
        #expect(settings.transport == .grpc)
        #expect(settings.metadata.textEntries.map { "\($0.name)=\($0.value)" } == ["x-team=ops", "x-source=file", "authorization=Bearer file-key"])
        #expect(settings.timeout == .seconds(5))
        let other = try CallSettings.resolve(CallFlags.unset, service: ServiceIdentity(fullName: "x.Y", command: "y"), environment: ["DRONECTL_CONFIG": path])
        #expect(other.endpoints == [Endpoint(host: "127.0.0.1", port: 1000)])
    }

    @Test("the environment overrides the file, and flags override both")
    func precedence() throws {
        let path = try Self.configFile(Self.file)
        let environment = ["DRONECTL_CONFIG": path, "DRONECTL_SERVER": "127.0.0.1:2000", "DRONECTL_API_KEY": "env-key", "DRONECTL_TIMEOUT": "7s"]
        let fromEnvironment = try CallSettings.resolve(CallFlags.unset, service: Self.delivery, environment: environment)
        #expect(fromEnvironment.endpoints == [Endpoint(host: "127.0.0.1", port: 2000)])
        #expect(fromEnvironment.metadata["authorization"] == "Bearer env-key")
        #expect(fromEnvironment.timeout == .seconds(7))

        var flags = CallFlags.unset
        flags.server = ["127.0.0.1:3000,127.0.0.1:3001"]
        flags.apiKey = "flag-key"
        flags.timeout = "250ms"
        flags.header = ["x-source: flag", "x-id: ${RUN_ID}"]
        let fromFlags = try CallSettings.resolve(flags, service: Self.delivery, environment: environment.merging(["RUN_ID": "42"]) { $1 })
        #expect(fromFlags.endpoints == [Endpoint(host: "127.0.0.1", port: 3000), Endpoint(host: "127.0.0.1", port: 3001)])
        #expect(fromFlags.metadata.textEntries.map { "\($0.name)=\($0.value)" } == ["x-team=ops", "x-source=flag", "x-id=42", "authorization=Bearer flag-key"])
        #expect(fromFlags.timeout == .milliseconds(250))
    }

    @Test("a context's tls object turns TLS on; each TLS flag overrides its field")
    func tlsFromContext() throws {
        let path = try Self.configFile("""
            {"currentContext": "secure",
             "contexts": {"secure": {"servers": {"default": "127.0.0.1:1000"},
                                     "tls": {"cacert": "/etc/hostname", "cert": "/etc/hostname", "key": "/etc/hostname", "servername": "delivery"}},
                          "plain": {"servers": {"default": "127.0.0.1:1000"}}}}
            """)
        let fromFile = try CallSettings.resolve(CallFlags.unset, service: Self.delivery, environment: ["DRONECTL_CONFIG": path])
        #expect(fromFile.tls?.caFile == "/etc/hostname" && fromFile.tls?.certificateChainFile == "/etc/hostname" && fromFile.tls?.serverName == "delivery")
        var flags = CallFlags.unset
        flags.servername = "other"
        #expect(try CallSettings.resolve(flags, service: Self.delivery, environment: ["DRONECTL_CONFIG": path]).tls?.serverName == "other")
        flags.context = "plain"
        flags.servername = nil
        #expect(try CallSettings.resolve(flags, service: Self.delivery, environment: ["DRONECTL_CONFIG": path]).tls == nil)
        let loaded = try ProfileStore.load(path: path)
        #expect(loaded["secure"]?.tls?.servername == "delivery")
        #expect("\(ProfileStore.json(loaded["secure"]!, redacted: false))".contains("servername"))
    }

    @Test("a context with the http transport calls its gateway; --context and DRONECTL_CONTEXT pick one")
    func transportAndContext() throws {
        let path = try Self.configFile(Self.file)
        var flags = CallFlags.unset
        flags.context = "public"
        let settings = try CallSettings.resolve(flags, service: Self.delivery, environment: ["DRONECTL_CONFIG": path])
        #expect(settings.transport == .http)
        #expect(settings.endpoints == [Endpoint(host: "gw.example", port: 9000)])
        let viaEnvironment = try CallSettings.resolve(CallFlags.unset, service: Self.delivery, environment: ["DRONECTL_CONFIG": path, "DRONECTL_CONTEXT": "public"])
        #expect(viaEnvironment.transport == .http)
        var grpc = flags
        grpc.transport = .grpc
        #expect(throws: UsageError.self) { try CallSettings.resolve(grpc, service: Self.delivery, environment: ["DRONECTL_CONFIG": path]) }
        flags.context = "missing"
        #expect(throws: UsageError.self) { try CallSettings.resolve(flags, service: Self.delivery, environment: ["DRONECTL_CONFIG": path]) }
    }

    @Test("mistakes are usage errors that say what was wrong")
    func mistakes() throws {
        func resolve(_ configure: (inout CallFlags) -> Void, environment: [String: String] = [:]) throws -> CallSettings {
            var flags = CallFlags.unset
            flags.server = ["127.0.0.1:1"]
            configure(&flags)
            return try CallSettings.resolve(flags, service: Self.delivery, environment: environment.merging(["DRONECTL_CONFIG": "/nonexistent"]) { $1 })
        }
        #expect(throws: UsageError("--timeout: expected a duration such as 1.5s, 300ms or 2m, got \"soon\"")) { try resolve { $0.timeout = "soon" } }
        #expect(throws: UsageError("-H x-id: ${MISSING} is not set in the environment")) { try resolve { $0.header = ["x-id: ${MISSING}"] } }
        #expect(throws: UsageError("-H grpc-timeout: this header belongs to the protocol and cannot be set (use --timeout for grpc-timeout)")) {
            try resolve { $0.header = ["grpc-timeout: 1S"] }
        }
        #expect(throws: UsageError("-H trace-bin: a -bin value must be base64, got \"%%%\"")) { try resolve { $0.header = ["trace-bin: %%%"] } }
        #expect(throws: UsageError("--server nohost: expected host:port with a port from 1 to 65535")) { try resolve { $0.server = ["nohost"] } }
        #expect(throws: UsageError("--cacert /nonexistent/ca.pem: cannot read the file (No such file or directory)")) {
            try resolve { $0.tls = true; $0.cacert = "/nonexistent/ca.pem" }
        }
        #expect(throws: UsageError("--cert and --key go together (a client certificate and its key)")) { try resolve { $0.cert = "/etc/hostname" } }
        #expect(throws: UsageError("--insecure skips verifying the server: it cannot be combined with --cacert or --servername")) {
            try resolve { $0.insecure = true; $0.servername = "x" }
        }
        #expect(try resolve { _ in }.tls == nil, "cleartext unless asked")
        let tls = try resolve { $0.servername = "delivery" }
        #expect(tls.tls?.serverName == "delivery" && tls.tls?.verifiesServer == true && tls.tls?.caFile == nil, "--servername implies --tls")
        let binary = try resolve { $0.header = ["trace-bin: AAEC"] }
        #expect(binary.metadata.binaryValues("trace-bin") == [[0, 1, 2]])
    }

    @Test("a store saves and loads the same contexts; a bad file names its problem")
    func storeRoundTrip() throws {
        var store = ProfileStore()
        var profile = LocalSystem.profile(portBase: 26000)
        profile.apiKey = "k"
        profile.headers = ["x-a: b"]
        profile.transport = .http
        store["local"] = profile
        store.currentContext = "local"
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-\(UUID().uuidString)/sub/config.json").path
        try store.save(path: path)
        #expect(try ProfileStore.load(path: path) == store)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(profile.gateway == "127.0.0.1:26009")
        #expect(profile.servers["delivery"] == ["127.0.0.1:26003"])
        let bad = try Self.configFile(#"{"contexts": {"x": {"transport": "carrier-pigeon"}}}"#)
        #expect(throws: UsageError("configuration \(bad): contexts.x.transport: expected grpc or http, got \"carrier-pigeon\"")) {
            try ProfileStore.load(path: bad)
        }
    }

    @Test("the local system's ports are the ones ServicePorts gives make run")
    func localSystemMatchesServicePorts() throws {
        #expect(LocalSystem.processes.map(\.process) == ServicePorts.Service.allCases.map(\.name))
        #expect(LocalSystem.defaultPortBase == ServicePorts.defaultBase)
        let defaults = LocalSystem.profile(portBase: ServicePorts.defaultBase)
        #expect(defaults.servers["delivery"] == ["127.0.0.1:\(ServicePorts.port(of: .delivery, base: nil))"])
        #expect(defaults.gateway == "127.0.0.1:\(ServicePorts.port(of: .gateway, base: nil))")
        let moved = LocalSystem.profile(portBase: 26000)
        #expect(moved.servers["flight-control"] == ["127.0.0.1:\(ServicePorts.port(of: .simulator, base: 26000))"])
        #expect(moved.servers["telemetry"] == ["127.0.0.1:\(ServicePorts.port(of: .droneScheduler, base: 26000))"], "the Drone Scheduler serves TelemetryService")
        #expect(moved.gateway == "127.0.0.1:\(ServicePorts.port(of: .gateway, base: 26000))")
    }

    @Test("durations")
    func durations() {
        #expect(DurationText.parse("1.5s") == .milliseconds(1500))
        #expect(DurationText.parse("1h30m") == .seconds(5400))
        #expect(DurationText.parse("250us") == .microseconds(250))
        #expect(DurationText.parse("5") == nil)
        #expect(DurationText.parse("s") == nil)
    }

    @Test("text output: nested members indented, list elements dashed, strings bare unless ambiguous")
    func readableText() throws {
        let json = try JSONParser.parse(#"{"id":"d-1","stage":"DELIVERY_STAGE_COMPLETED","where":{"latitude":47.6,"tags":["a","true",""]},"items":[{"n":1,"m":{"k":"v"}}],"empty":{}}"#)
        #expect(JSONText.readable(json) == """
            id: d-1
            stage: DELIVERY_STAGE_COMPLETED
            where:
              latitude: 47.6
              tags:
                - a
                - "true"
                - ""
            items:
              - n: 1
                m:
                  k: v
            empty: {}
            """)
    }
}
