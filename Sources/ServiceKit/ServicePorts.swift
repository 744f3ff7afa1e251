import Foundation

/// Where each process of the system listens on one machine: the one place the order of the
/// ports is written. The executables take their default port and their downstreams' from it,
/// `tools/run-service.sh` only says which executable to start, and the tests read it.
///
/// The RPC ports are `base`, `base + 1`, ... in the order of `Service`; `base` is
/// `FABRIKAM_PORT_BASE`, or 15051. The gateway is 8080, or `base + 9` when `FABRIKAM_PORT_BASE`
/// is set. The defaults lie below Linux's ephemeral port range (32768-60999, where the kernel
/// picks the local ports of outgoing connections): a port in that range can be taken by an
/// outgoing connection (even one that connects to itself while the service is not listening
/// yet) before the service binds it.
public enum ServicePorts {
    /// The processes, in the order of their ports.
    public enum Service: String, CaseIterable, Sendable {
        case accounts, package, droneScheduler = "dronescheduler", delivery, deliveryHistory = "deliveryhistory", ingestion,
             workflow, supervisor, simulator, gateway

        /// The name `tools/run-service.sh` and the logs use.
        public var name: String { rawValue }
        /// Its place after the base port.
        public var offset: Int { Self.allCases.firstIndex(of: self)! }
    }

    /// The first RPC port when `FABRIKAM_PORT_BASE` is not set.
    public static let defaultBase = 15051
    /// The gateway's port when `FABRIKAM_PORT_BASE` is not set.
    public static let defaultGatewayPort = 8080
    /// The variable that moves every port.
    public static let baseVariable = "FABRIKAM_PORT_BASE"

    /// `FABRIKAM_PORT_BASE` when it is set and valid (checked by `checkEnvironment`).
    public static func configuredBase(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int? {
        environment[baseVariable].flatMap { Int($0) }
    }

    /// A service's port for the base in `environment` (or the defaults).
    public static func port(of service: Service, environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        port(of: service, base: configuredBase(environment))
    }

    /// A service's port for `base` (nil: the defaults).
    public static func port(of service: Service, base: Int?) -> Int {
        if service == .gateway, base == nil { return defaultGatewayPort }
        return (base ?? defaultBase) + service.offset
    }

    /// Nil when `FABRIKAM_PORT_BASE` is unset or usable; otherwise what is wrong with it.
    public static func checkEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let text = environment[baseVariable] else { return nil }
        let last = 65535 - (Service.allCases.count - 1)
        guard let base = Int(text), (1...last).contains(base) else {
            return "\(baseVariable) must be a port number from 1 to \(last) (the ports are it and the next \(Service.allCases.count - 1)), got \"\(text)\""
        }
        return nil
    }
}
