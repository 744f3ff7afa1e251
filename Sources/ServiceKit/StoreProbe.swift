#if canImport(Glibc)
import Glibc
#endif
internal import CSQLite
import Dispatch
import Foundation

/// Checks that a SQLite file a service depends on is usable, the way a restarted process would
/// find it, for the service's health. Unusable:
/// - the file is gone or was replaced (its folder removed, say): the service's open connection
///   still writes, but into a file nobody will find again;
/// - the file cannot be opened for writing;
/// - another connection holds the write lock for longer than `lockWait` (a process stuck in a
///   transaction): every write of the service waits, then fails.
public struct StoreProbe: Sendable {
    /// What the file is, for the log ("package store", "broker").
    public let name: String
    public let path: String
    /// The file's identity when the service opened it.
    private let identity: (device: UInt64, inode: UInt64)?
    /// How long the probe waits for the write lock.
    public var lockWait: Duration = .seconds(1)
    /// A check of its own (a store that is not a SQLite file: PostgreSQL).
    private let check: (@Sendable () -> String?)?

    /// Call once the service has opened the file, so that the file it has open is the one checked.
    public init(name: String, path: String) {
        self.name = name
        self.path = path
        identity = Self.identity(of: path)
        check = nil
    }

    /// A store checked by `check` (nil when usable; otherwise what is wrong), for engines that
    /// are not a file.
    public init(name: String, check: @escaping @Sendable () -> String?) {
        self.name = name
        path = ""
        identity = nil
        self.check = check
    }

    /// Nil when the file is usable; otherwise what is wrong, naming the file.
    public func problem() -> String? {
        if let check { return check() }
        guard let current = Self.identity(of: path) else {
            return "\(name) \(path) is gone (\(String(cString: strerror(errno))))"
        }
        if let identity, identity != current {
            return "\(name) \(path) was replaced by another file; this process still has the old one open"
        }
        var handle: OpaquePointer?
        let status = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
        defer { sqlite3_close_v2(handle) }
        guard status == SQLITE_OK, let handle else {
            return "\(name) \(path) cannot be opened for writing (SQLite \(status))"
        }
        let milliseconds = Int32(lockWait.components.seconds * 1000 + lockWait.components.attoseconds / 1_000_000_000_000_000)
        sqlite3_busy_timeout(handle, milliseconds)
        // Take the write lock and give it back at once: nothing is written.
        let begin = sqlite3_exec(handle, "BEGIN IMMEDIATE", nil, nil, nil)
        guard begin == SQLITE_OK else {
            let detail = begin & 0xff == SQLITE_BUSY ? "is locked by another connection" : "cannot be written (SQLite \(begin): \(String(cString: sqlite3_errmsg(handle))))"
            return "\(name) \(path) \(detail)"
        }
        sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
        return nil
    }

    /// The first problem among `probes`, checked off the event loops and the cooperative pool
    /// (a probe may wait for a lock).
    public static func firstProblem(_ probes: [StoreProbe]) async -> String? {
        await firstProblem(checks: probes.map { probe in { probe.problem() } })
    }

    /// The first non-nil answer among `checks`, each run at most once, in order, on the probe
    /// queue. Once each: a check's answer can change from one run to the next (a lock held a
    /// moment ago is free now), so the answer found is the one returned. (`lazy.compactMap
    /// { ... }.first` runs the winning check twice and traps when the second run says nil: under
    /// load that stopped Drone Scheduler.)
    static func firstProblem(checks: [@Sendable () -> String?]) async -> String? {
        guard !checks.isEmpty else { return nil }
        return await withCheckedContinuation { continuation in
            queue.async {
                for check in checks {
                    if let problem = check() { return continuation.resume(returning: problem) }
                }
                continuation.resume(returning: nil)
            }
        }
    }

    private static let queue = DispatchQueue(label: "fabrikam.store-probe")

    private static func identity(of path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }
}
