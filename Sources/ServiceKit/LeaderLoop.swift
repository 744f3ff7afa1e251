import Foundation
import Logging
import Storage
import Synchronization

/// This process's name as a holder of claims and leases.
public enum ReplicaID {
    /// `<hostname>-<pid>`: different for every process running at one time in a deployment.
    public static let process = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
}

extension Configuration {
    /// The name this replica holds claims and leases under (`--replica-id`,
    /// `FABRIKAM_REPLICA_ID`); `ReplicaID.process` by default.
    public var replicaID: String { string("replica-id", default: ReplicaID.process) }
}

/// Runs a loop that must run once per deployment (an outbox relay, a sweep) only on the replica
/// that holds the lease `name`. Every replica runs a `LeaderLoop`; the one that takes the lease
/// runs the work and renews the lease every `renewEvery`; the others keep asking at that pace, so
/// one of them takes over within `ttl` + `renewEvery` of the holder dying.
///
/// The work is cancelled as soon as a renewal is refused or fails, and also when no renewal has
/// succeeded by the time the lease may have run out (`ttl` after the last successful request
/// was sent): a replica stalled on a slow database stops before another one can take over.
public struct LeaderLoop: Sendable {
    public let name: String
    public let holder: String
    public let ttl: Duration
    public let renewEvery: Duration
    let leases: any LeaseStore
    let logger: Logger

    /// - Parameters:
    ///   - renewEvery: well under `ttl`, so a renewal or two may fail or be slow without the lease running out.
    public init(name: String, holder: String, leases: any LeaseStore, ttl: Duration = .seconds(10), renewEvery: Duration = .seconds(3),
                logger: Logger = Logger(label: "fabrikam.leader")) {
        precondition(renewEvery < ttl, "a lease must be renewed before it runs out")
        self.name = name
        self.holder = holder
        self.leases = leases
        self.ttl = ttl
        self.renewEvery = renewEvery
        self.logger = logger
    }

    /// Runs `work` whenever this replica holds the lease, until cancelled. `work` should run until
    /// it is cancelled; it is started again each time the lease is won. On cancellation the lease
    /// is released, so another replica takes over without waiting for it to expire.
    public func run(_ work: @escaping @Sendable () async -> Void) async {
        while !Task.isCancelled {
            let asked = ContinuousClock.now
            if await acquire() {
                logger.info("holding the lease: running the work", metadata: ["lease": "\(name)", "holder": "\(holder)"])
                let lost = await lead(work, heldFrom: asked)
                if Task.isCancelled { break }
                if lost { logger.warning("lease lost: the work stopped", metadata: ["lease": "\(name)", "holder": "\(holder)"]) }
            }
            try? await Task.sleep(for: renewEvery)
        }
        // The release runs although the task is cancelled: a database call does not stop for that.
        try? await leases.release(name, holder: holder)
    }

    /// Takes or renews the lease; a failing store counts as refused (the lease cannot be known to be ours).
    private func acquire() async -> Bool {
        do {
            return try await leases.acquire(name, holder: holder, for: ttl)
        } catch {
            logger.warning("lease request failed", metadata: ["lease": "\(name)", "error": "\(error)"])
            return false
        }
    }

    /// Runs `work` while the lease is renewed; returns once it has stopped: true when the lease
    /// was lost (or could not be confirmed in time), false when cancelled or `work` returned.
    private func lead(_ work: @escaping @Sendable () async -> Void, heldFrom asked: ContinuousClock.Instant) async -> Bool {
        // The lease surely lasts until `ttl` after the request that took or renewed it was sent
        // (the database started counting later than that).
        let heldUntil = Mutex(asked + ttl)
        let finished = Atomic(false)
        let worker = Task {
            await work()
            finished.store(true, ordering: .releasing)
        }
        let watchdog = Task {
            while !Task.isCancelled {
                let until = heldUntil.withLock { $0 }
                if ContinuousClock.now >= until {
                    worker.cancel()
                    return
                }
                try? await Task.sleep(until: until, clock: .continuous)
            }
        }
        await withTaskCancellationHandler {
            while !Task.isCancelled, !finished.load(ordering: .acquiring), !worker.isCancelled {
                try? await Task.sleep(for: renewEvery)
                if Task.isCancelled || finished.load(ordering: .acquiring) || worker.isCancelled { break }
                let asked = ContinuousClock.now
                guard await acquire() else { break }
                heldUntil.withLock { $0 = asked + ttl }
            }
        } onCancel: {
            worker.cancel()
        }
        let lost = !Task.isCancelled && !finished.load(ordering: .acquiring)
        worker.cancel()
        watchdog.cancel()
        await worker.value
        return lost
    }
}
