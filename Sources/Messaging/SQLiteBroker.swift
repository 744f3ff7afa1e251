import Foundation
import Storage

/// The embedded message broker: queues and event streams kept in one SQLite file that several
/// processes on one machine share (WAL mode; writers take turns through SQLite's file lock).
///
/// Tables: `messages` (waiting or leased), `message_log` (every message ever accepted, for
/// de-duplication and as the retained log of topics), `dead_letters`, `subscriptions`.
/// Consumers poll; see `MessageConsumer` for the loop.
public final class SQLiteBroker: MessageQueue, EventStream {
    public let database: SQLiteDatabase
    public var guarantees: MessagingGuarantees {
        MessagingGuarantees(deduplicationWindow: nil, durableAgainstPowerLoss: true, spansHosts: false, fencedAcknowledgement: true, exactLookups: true)
    }
    /// A message handed out this many times without acknowledgement is dead-lettered.
    public let maxDeliveries: Int

    public init(path: String, maxDeliveries: Int = 10) throws {
        self.database = try SQLiteDatabase(path: path, migrations: Self.schema)
        self.maxDeliveries = maxDeliveries
    }

    static let schema = [
        """
        CREATE TABLE message_log (
            queue TEXT NOT NULL, message_id TEXT NOT NULL, seq INTEGER NOT NULL,
            key TEXT NOT NULL, headers TEXT NOT NULL, payload BLOB NOT NULL, enqueue_time REAL NOT NULL,
            PRIMARY KEY (queue, message_id));
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL,
            key TEXT NOT NULL, headers TEXT NOT NULL, payload BLOB NOT NULL, enqueue_time REAL NOT NULL,
            visible_at REAL NOT NULL, delivery_count INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT, lease_until REAL);
        CREATE INDEX messages_ready ON messages (queue, seq);
        CREATE INDEX messages_key ON messages (queue, key, seq);
        CREATE TABLE dead_letters (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL,
            key TEXT NOT NULL, headers TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL,
            delivery_count INTEGER NOT NULL, time REAL NOT NULL);
        CREATE TABLE subscriptions (topic TEXT NOT NULL, grp TEXT NOT NULL, PRIMARY KEY (topic, grp));
        """,
        // Sequence numbers of a queue's log come from MAX(seq): without this index every send
        // scanned the whole log (measured: sends slowed down as the log grew).
        "CREATE UNIQUE INDEX message_log_sequence ON message_log (queue, seq)",
        // Look-ups of one entity's dead letters (`deadLetters(of:key:)`).
        "CREATE INDEX dead_letters_key ON dead_letters (queue, key, seq)",
    ]

    // MARK: MessageQueue

    public func send(_ message: OutgoingMessage, to queue: String) async throws -> SendResult {
        try await database.write { db in try Self.insert(message, queues: [queue], log: queue, db: db) }
    }

    /// Stores the message in the log of `log` (de-duplicating on its id) and in each queue.
    private static func insert(_ message: OutgoingMessage, queues: [String], log: String, db: SQLiteConnection) throws -> SendResult {
        if let existing = try db.queryFirst("SELECT seq, payload FROM message_log WHERE queue = ? AND message_id = ?", [.text(log), .text(message.id)]) {
            return SendResult(sequence: existing.int(0), duplicate: true, duplicateOf: existing.bytes(1))
        }
        let now = Date().timeIntervalSince1970
        let headers = encodeHeaders(message.headers)
        var firstSequence: Int64 = 0
        for queue in queues {
            try db.run("INSERT INTO messages (queue, message_id, key, headers, payload, enqueue_time, visible_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [.text(queue), .text(message.id), .text(message.key), .text(headers), .blob(message.payload), .real(now), .real(now)])
            if firstSequence == 0 { firstSequence = db.lastInsertRowID }
        }
        let logSequence = try (db.queryFirst("SELECT COALESCE(MAX(seq), 0) + 1 FROM message_log WHERE queue = ?", [.text(log)])?.int(0)) ?? 1
        try db.run("INSERT INTO message_log (queue, message_id, seq, key, headers, payload, enqueue_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [.text(log), .text(message.id), .integer(logSequence), .text(message.key), .text(headers), .blob(message.payload), .real(now)])
        return SendResult(sequence: firstSequence == 0 ? logSequence : firstSequence, duplicate: false)
    }

    public func receive(from queue: String, consumer: String, maxMessages: Int, lease: Duration) async throws -> [ReceivedMessage] {
        let maxDeliveries = maxDeliveries
        let leaseSeconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        return try await database.write { db in
            let now = Date().timeIntervalSince1970
            // Ready: visible, not leased (or its lease ran out), and no earlier message with the
            // same key still waiting, so each key's messages go out one at a time, in order.
            let rows = try db.query("""
                SELECT seq, message_id, key, headers, payload, delivery_count, enqueue_time FROM messages m
                WHERE queue = ? AND visible_at <= ? AND (lease_until IS NULL OR lease_until <= ?)
                  AND (key = '' OR NOT EXISTS (SELECT 1 FROM messages o WHERE o.queue = m.queue AND o.key = m.key AND o.seq < m.seq))
                ORDER BY seq LIMIT ?
                """, [.text(queue), .real(now), .real(now), .int(maxMessages)])
            var received: [ReceivedMessage] = []
            for row in rows {
                var message = ReceivedMessage(queue: queue, sequence: row.int(0), id: row.string(1), key: row.string(2),
                                              headers: decodeHeaders(row.string(3)), payload: row.bytes(4),
                                              deliveryCount: Int(row.int(5)) + 1, enqueueTime: row.double(6), maxDeliveries: maxDeliveries)
                if message.deliveryCount > maxDeliveries {
                    message.deliveryCount -= 1
                    try Self.moveToDeadLetters(message, reason: "not acknowledged after \(maxDeliveries) deliveries (consumer crashed or timed out each time)", db: db)
                    continue
                }
                try db.run("UPDATE messages SET delivery_count = delivery_count + 1, lease_owner = ?, lease_until = ? WHERE seq = ?",
                           [.text(consumer), .real(now + leaseSeconds), .integer(message.sequence)])
                received.append(message)
            }
            return received
        }
    }

    /// Removes the message unless its lease ran out and it was handed out again meanwhile (then
    /// the stale acknowledgement does nothing: this engine fences it, JetStream does not).
    public func acknowledge(_ message: ReceivedMessage) async throws {
        try await database.write { db in
            try db.run("DELETE FROM messages WHERE seq = ? AND delivery_count = ?", [.integer(message.sequence), .int(message.deliveryCount)])
        }
    }

    public func release(_ message: ReceivedMessage, after delay: Duration) async throws {
        let delaySeconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        try await database.write { db in
            try db.run("UPDATE messages SET lease_owner = NULL, lease_until = NULL, visible_at = ? WHERE seq = ? AND delivery_count = ?",
                       [.real(Date().timeIntervalSince1970 + delaySeconds), .integer(message.sequence), .int(message.deliveryCount)])
        }
    }

    public func postpone(_ message: ReceivedMessage, after delay: Duration) async throws {
        let delaySeconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
        try await database.write { db in
            try db.run("""
                UPDATE messages SET lease_owner = NULL, lease_until = NULL, visible_at = ?, delivery_count = MAX(delivery_count - 1, 0)
                WHERE seq = ? AND delivery_count = ?
                """, [.real(Date().timeIntervalSince1970 + delaySeconds), .integer(message.sequence), .int(message.deliveryCount)])
        }
    }

    public func extendLease(_ message: ReceivedMessage, by lease: Duration) async throws {
        let leaseSeconds = Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
        try await database.write { db in
            try db.run("UPDATE messages SET lease_until = ? WHERE seq = ? AND delivery_count = ?",
                       [.real(Date().timeIntervalSince1970 + leaseSeconds), .integer(message.sequence), .int(message.deliveryCount)])
        }
    }

    public func deadLetter(_ message: ReceivedMessage, reason: String) async throws {
        try await database.write { db in try Self.moveToDeadLetters(message, reason: reason, db: db) }
    }

    private static func moveToDeadLetters(_ message: ReceivedMessage, reason: String, db: SQLiteConnection) throws {
        try db.run("INSERT INTO dead_letters (queue, message_id, key, headers, payload, reason, delivery_count, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [.text(message.queue), .text(message.id), .text(message.key), .text(encodeHeaders(message.headers)), .blob(message.payload),
                    .text(reason), .int(message.deliveryCount), .real(Date().timeIntervalSince1970)])
        try db.run("DELETE FROM messages WHERE seq = ?", [.integer(message.sequence)])
    }

    public func deadLetters(of queue: String, key: String?, after sequence: Int64, limit: Int) async throws -> [DeadLetter] {
        try await database.read { db in
            let columns = "seq, message_id, key, headers, payload, reason, delivery_count, time"
            let rows = if let key {
                try db.query("SELECT \(columns) FROM dead_letters WHERE queue = ? AND key = ? AND seq > ? ORDER BY seq LIMIT ?",
                             [.text(queue), .text(key), .integer(sequence), .int(limit)])
            } else {
                try db.query("SELECT \(columns) FROM dead_letters WHERE queue = ? AND seq > ? ORDER BY seq LIMIT ?",
                             [.text(queue), .integer(sequence), .int(limit)])
            }
            return rows.map {
                DeadLetter(sequence: $0.int(0), queue: queue, id: $0.string(1), key: $0.string(2), headers: decodeHeaders($0.string(3)), payload: $0.bytes(4),
                           reason: $0.string(5), deliveryCount: Int($0.int(6)), time: $0.double(7))
            }
        }
    }

    public func redrive(_ queue: String, sequences: [Int64]?) async throws -> [String] {
        try await database.write { db in
            let columns = "seq, message_id, key, headers, payload"
            let rows = if let sequences {
                try sequences.compactMap { try db.queryFirst("SELECT \(columns) FROM dead_letters WHERE queue = ? AND seq = ?", [.text(queue), .integer($0)]) }
                    .sorted { $0.int(0) < $1.int(0) }
            } else {
                try db.query("SELECT \(columns) FROM dead_letters WHERE queue = ? ORDER BY seq", [.text(queue)])
            }
            let now = Date().timeIntervalSince1970
            for row in rows {
                // Back at the end of its queue, as sent (same id, key, headers and payload), never handed out.
                try db.run("INSERT INTO messages (queue, message_id, key, headers, payload, enqueue_time, visible_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [.text(queue), .text(row.string(1)), .text(row.string(2)), .text(row.string(3)), .blob(row.bytes(4)), .real(now), .real(now)])
                try db.run("DELETE FROM dead_letters WHERE seq = ?", [.integer(row.int(0))])
            }
            return rows.map { $0.string(1) }
        }
    }

    public func messages(in queue: String, key: String) async throws -> [QueuedMessage] {
        try await database.read { db in
            let now = Date().timeIntervalSince1970
            return try db.query("SELECT message_id, payload, delivery_count, enqueue_time, lease_until FROM messages WHERE queue = ? AND key = ? ORDER BY seq",
                                [.text(queue), .text(key)]).map {
                QueuedMessage(id: $0.string(0), key: key, payload: $0.bytes(1), deliveryCount: Int($0.int(2)), enqueueTime: $0.double(3),
                              isLeased: !$0.isNull(4) && $0.double(4) > now)
            }
        }
    }

    public func depth(of queue: String) async throws -> Int {
        try await database.read { db in Int(try db.queryFirst("SELECT COUNT(*) FROM messages WHERE queue = ?", [.text(queue)])?.int(0) ?? 0) }
    }

    /// How many distinct messages a queue or topic has ever accepted.
    public func acceptedCount(of queue: String) async throws -> Int {
        try await database.read { db in Int(try db.queryFirst("SELECT COUNT(*) FROM message_log WHERE queue = ?", [.text(queue)])?.int(0) ?? 0) }
    }

    // MARK: EventStream

    public func publish(_ event: OutgoingMessage, to topic: String) async throws -> SendResult {
        try await database.write { db in
            let groups = try db.query("SELECT grp FROM subscriptions WHERE topic = ? ORDER BY grp", [.text(topic)]).map { $0.string(0) }
            return try Self.insert(event, queues: groups.map { Self.groupQueue(topic: topic, group: $0) }, log: topic, db: db)
        }
    }

    public func subscribe(to topic: String, group: String) async throws -> String {
        let queue = Self.groupQueue(topic: topic, group: group)
        try await database.write { db in
            guard try db.run("INSERT OR IGNORE INTO subscriptions (topic, grp) VALUES (?, ?)", [.text(topic), .text(group)]) == 1 else { return }
            // A new group starts from the first retained event.
            try db.run("""
                INSERT INTO messages (queue, message_id, key, headers, payload, enqueue_time, visible_at)
                SELECT ?, message_id, key, headers, payload, enqueue_time, enqueue_time FROM message_log WHERE queue = ? ORDER BY seq
                """, [.text(queue), .text(topic)])
        }
        return queue
    }

    /// The queue a subscriber group reads a topic's events from.
    public static func groupQueue(topic: String, group: String) -> String { "\(topic)#\(group)" }
}

/// Headers as `name=value` lines, with `%`, `=` and newlines percent-escaped.
package func encodeHeaders(_ headers: [String: String]) -> String {
    func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "%": out += "%25"
            case "=": out += "%3D"
            case "\n": out += "%0A"
            case "\r": out += "%0D"
            default: out.append(character)
            }
        }
        return out
    }
    return headers.sorted { $0.key < $1.key }.map { escape($0.key) + "=" + escape($0.value) }.joined(separator: "\n")
}

package func decodeHeaders(_ text: String) -> [String: String] {
    var headers: [String: String] = [:]
    for line in text.split(separator: "\n") {
        guard let equals = line.firstIndex(of: "=") else { continue }
        let name = String(line[..<equals]).removingPercentEncoding ?? String(line[..<equals])
        let value = String(line[line.index(after: equals)...])
        headers[name] = value.removingPercentEncoding ?? value
    }
    return headers
}
