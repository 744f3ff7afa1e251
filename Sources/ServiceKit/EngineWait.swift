import Foundation
import Logging

/// How long a service waits at start for its engines (PostgreSQL, NATS) to accept connections:
/// `FABRIKAM_ENGINE_WAIT_SECONDS`, default 0 (the first failure stops the process, as before).
///
/// Containers start together (compose, a pod rollout, `podman kube play`) and the engines take
/// seconds to be ready (initdb on a fresh volume). A service that exits at once crash-loops
/// meanwhile: podman restarts without backoff, Kubernetes with a backoff that outlasts the
/// engine's start. compose.yaml and the Kubernetes overlays set 60. Only reaching the engine is
/// retried; a malformed setting still stops the process at once.
public struct EngineWait: Sendable {
    public static let variable = "FABRIKAM_ENGINE_WAIT_SECONDS"
    public let seconds: Int
    private static let backoff = JitteredBackoff(initial: .milliseconds(200), maximum: .seconds(2))

    public init(_ configuration: Configuration) throws {
        seconds = try configuration.int("engine-wait-seconds", default: 0)
        guard seconds >= 0 else { throw ConfigurationError("\(Self.variable) must be 0 or more, got \(seconds)") }
    }

    /// Runs `attempt` until it succeeds or the wait is over (then its last error is thrown).
    func retrying<T>(_ engine: String, logger: Logger, _ attempt: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var failures = 0
        while true {
            do {
                return try await attempt()
            } catch {
                failures += 1
                guard ContinuousClock.now < deadline else { throw error }
                logger.notice("\(engine) not reachable yet; retrying", metadata: ["error": "\(error)", "attempt": "\(failures)"])
                try await Task.sleep(for: Self.backoff.delay(afterAttempt: failures))
            }
        }
    }

    /// The same for a synchronous check, blocking the calling thread: for a service's start,
    /// before its server or any background task exists, where there is nothing else to run.
    func blocking(_ engine: String, logger: Logger, until problem: () -> String?) throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var failures = 0
        while let text = problem() {
            failures += 1
            guard ContinuousClock.now < deadline else { throw EngineUnreachable(description: "\(engine): \(text)") }
            logger.notice("\(engine) not reachable yet; retrying", metadata: ["error": "\(text)", "attempt": "\(failures)"])
            let pause = Self.backoff.delay(afterAttempt: failures).components
            Thread.sleep(forTimeInterval: Double(pause.seconds) + Double(pause.attoseconds) / 1e18)
        }
    }
}

/// An engine that did not answer within `FABRIKAM_ENGINE_WAIT_SECONDS`.
public struct EngineUnreachable: Error, CustomStringConvertible, Equatable {
    public let description: String
}
