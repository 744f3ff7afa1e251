import CSQLite

/// Telling "the store cannot serve now" from "the store refused this".
///
/// A consumer of a durable queue counts each failed attempt toward the queue's delivery limit
/// and dead-letters the message past it. That is right when the message may be at fault (the
/// store rejects its data: retrying will not help, and a person should look), and wrong when
/// the store is down, restarting or overloaded: a well-formed message would be dead-lettered
/// by an outage a few seconds longer than its retries, and lost to whatever reads the queue.
/// So every engine's error says which kind it is, and a consumer waits out the first kind
/// without counting (see `Disposition.afterStoreFailure` in Messaging).

/// An error of a storage engine that knows whether it means the store is unavailable.
public protocol StorageFailure: Error {
    /// True when the store could not serve the request now but the same request may succeed
    /// later: it could not be reached, lost the connection, is shutting down or starting,
    /// is out of a resource (connections, disk, memory), or is locked by another writer.
    /// False when it refused the request itself (a constraint, a value it cannot store, bad
    /// SQL): running it again would fail the same way.
    var isUnavailable: Bool { get }
}

/// Whether `error` says the store is unavailable (see `StorageFailure.isUnavailable`). An error
/// that is not a storage engine's (a decoding failure, a cancellation) is not.
public func isStoreUnavailable(_ error: any Error) -> Bool {
    (error as? any StorageFailure)?.isUnavailable ?? false
}

extension SQLiteError: StorageFailure {
    /// BUSY and LOCKED (another connection or process holds the lock past `busy_timeout`), IOERR
    /// and CANTOPEN (the file system failed us), FULL (the disk is full): none is about the
    /// statement or its values. Everything else (a constraint, a type, misuse) is.
    public var isUnavailable: Bool {
        switch code & 0xff {
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_FULL: true
        default: false
        }
    }
}

extension StorageError: StorageFailure {}
