import CSQLite

/// A value SQLite stores or returns: its five storage classes.
public enum SQLValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

extension SQLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .real(value) }
    public init(nilLiteral: ()) { self = .null }
}

extension SQLValue {
    public static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }
    public static func bool(_ value: Bool) -> SQLValue { .integer(value ? 1 : 0) }
    /// Text, or NULL for an empty string (for optional references such as a drone id).
    public static func optionalText(_ value: String) -> SQLValue { value.isEmpty ? .null : .text(value) }

    /// `(?, ?, ?)` with one placeholder per value, for `column IN (...)`: the SQL to append and
    /// the parameters to bind with it.
    public static func inList(_ values: [SQLValue]) -> (sql: String, parameters: [SQLValue]) {
        ("(" + values.map { _ in "?" }.joined(separator: ", ") + ")", values)
    }
}

/// A failed SQLite call, with SQLite's own message and the statement that failed.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public let sql: String
    public var description: String { "SQLite error \(code): \(message) (in: \(sql))" }

    /// True for a UNIQUE or PRIMARY KEY violation.
    public var isConstraintViolation: Bool { code & 0xff == SQLITE_CONSTRAINT }
}

/// One result row. Columns are read by index, in the order of the SELECT list.
public struct Row: Sendable {
    public let values: [SQLValue]

    public init(values: [SQLValue]) { self.values = values }

    public subscript(_ index: Int) -> SQLValue { values[index] }

    public func int(_ index: Int) -> Int64 {
        switch values[index] {
        case .integer(let value): return value
        case .real(let value): return Int64(value)
        default: return 0
        }
    }
    public func double(_ index: Int) -> Double {
        switch values[index] {
        case .integer(let value): return Double(value)
        case .real(let value): return value
        default: return 0
        }
    }
    public func string(_ index: Int) -> String {
        switch values[index] {
        case .text(let value): return value
        case .integer(let value): return String(value)
        default: return ""
        }
    }
    public func bytes(_ index: Int) -> [UInt8] {
        switch values[index] {
        case .blob(let value): return value
        case .text(let value): return Array(value.utf8)
        default: return []
        }
    }
    public func bool(_ index: Int) -> Bool { int(index) != 0 }
    public func isNull(_ index: Int) -> Bool { values[index] == .null }
}

/// One open SQLite database handle. Not thread-safe: a `SQLiteDatabase` confines it to its own
/// serial queue and hands it to one closure at a time. Prepared statements are cached by their text.
public final class SQLiteConnection: SQLTransaction {
    let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]
    /// Prepared statements kept at most (see `prepared`).
    static let maxCachedStatements = 256
    /// Prepared statements kept now (tests).
    var cachedStatementCount: Int { statements.count }
    private let transactionGuard = TransactionGuard()

    init(path: String) throws {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let handle { sqlite3_close_v2(handle) }
            throw SQLiteError(code: status, message: message, sql: "open \(path)")
        }
        self.handle = handle
        sqlite3_extended_result_codes(handle, 1)
        // Set once: changing an authorizer expires every prepared statement of the connection.
        sqlite3_set_authorizer(handle, refuseTransactionControl, Unmanaged.passUnretained(transactionGuard).toOpaque())
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(handle)
    }

    /// Runs one or more statements that take no parameters and return nothing of interest.
    public func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if status != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? "error"
            sqlite3_free(errorMessage)
            throw SQLiteError(code: status, message: message, sql: sql)
        }
    }

    /// Runs a statement with parameters (`?` in order); returns the number of rows it changed.
    @discardableResult
    public func run(_ sql: String, _ parameters: [SQLValue] = []) throws -> Int {
        let statement = try prepared(sql, parameters)
        defer { sqlite3_reset(statement) }
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { break }
            if status != SQLITE_ROW { throw error(status, sql) }
        }
        return Int(sqlite3_changes(handle))
    }

    /// Runs a query and returns every row.
    public func query(_ sql: String, _ parameters: [SQLValue] = []) throws -> [Row] {
        let statement = try prepared(sql, parameters)
        defer { sqlite3_reset(statement) }
        var rows: [Row] = []
        let columns = sqlite3_column_count(statement)
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { break }
            guard status == SQLITE_ROW else { throw error(status, sql) }
            var values: [SQLValue] = []
            values.reserveCapacity(Int(columns))
            for column in 0..<columns { values.append(value(statement, column)) }
            rows.append(Row(values: values))
        }
        return rows
    }

    /// The first row of a query, if any.
    public func queryFirst(_ sql: String, _ parameters: [SQLValue] = []) throws -> Row? {
        try query(sql, parameters).first
    }

    /// Whether a transaction is open. SQLite ends one by itself after some failures (a full disk,
    /// an I/O error, `RAISE(ROLLBACK)` in a trigger), undoing everything done since BEGIN.
    public var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// While set, statements that begin or end a transaction or a savepoint are refused when they
    /// are prepared (SQLITE_AUTH): a job in a shared batch must not commit or roll back its
    /// neighbours' work. Transaction statements are never cached, so each is checked.
    var refusesTransactionControl: Bool {
        get { transactionGuard.refuses }
        set { transactionGuard.refuses = newValue }
    }

    public var dialect: Dialect { .sqlite }

    /// Nothing to take: a write transaction already holds the file's one write lock.
    public func lock(_ key: String) throws {}

    /// The rowid of the last successful INSERT on this handle.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    private func prepared(_ sql: String, _ parameters: [SQLValue]) throws -> OpaquePointer {
        let statement: OpaquePointer
        if let cached = statements[sql] {
            statement = cached
        } else {
            var created: OpaquePointer?
            let status = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &created, nil)
            guard status == SQLITE_OK, let created else { throw error(status, sql) }
            if statements.count >= Self.maxCachedStatements {
                // A text made of values (an IN list's length) would otherwise grow the cache for
                // ever; the stores' few fixed statements are prepared again at their next use.
                // Nothing else is mid-use: a statement runs to completion inside one call.
                for statement in statements.values { sqlite3_finalize(statement) }
                statements = [:]
            }
            statements[sql] = created
            statement = created
        }
        sqlite3_clear_bindings(statement)
        let expected = Int(sqlite3_bind_parameter_count(statement))
        guard expected == parameters.count else {
            throw SQLiteError(code: SQLITE_RANGE, message: "statement takes \(expected) parameters, got \(parameters.count)", sql: sql)
        }
        for (offset, parameter) in parameters.enumerated() {
            let index = Int32(offset + 1)
            let status: Int32
            switch parameter {
            case .null: status = sqlite3_bind_null(statement, index)
            case .integer(let value): status = sqlite3_bind_int64(statement, index, value)
            case .real(let value): status = sqlite3_bind_double(statement, index, value)
            case .text(let value):
                status = value.utf8.withContiguousStorageIfAvailable { buffer in
                    buffer.withMemoryRebound(to: CChar.self) { csqlite_bind_text(statement, index, $0.baseAddress, Int32($0.count)) }
                } ?? {
                    var copy = value
                    return copy.withUTF8 { buffer in
                        buffer.withMemoryRebound(to: CChar.self) { csqlite_bind_text(statement, index, $0.baseAddress, Int32($0.count)) }
                    }
                }()
            case .blob(let value):
                // An empty blob is still a blob (not NULL): give SQLite a valid pointer.
                status = value.withUnsafeBytes { buffer in
                    buffer.isEmpty ? sqlite3_bind_zeroblob(statement, index, 0) : csqlite_bind_blob(statement, index, buffer.baseAddress, Int32(buffer.count))
                }
            }
            if status != SQLITE_OK { throw error(status, sql) }
        }
        return statement
    }

    private func value(_ statement: OpaquePointer, _ column: Int32) -> SQLValue {
        switch sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, column))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            let count = Int(sqlite3_column_bytes(statement, column))
            guard let text = sqlite3_column_text(statement, column) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, column))
            guard count > 0, let bytes = sqlite3_column_blob(statement, column) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default: return .null
        }
    }

    private func error(_ status: Int32, _ sql: String) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }
}

/// The authorizer's switch. Read and written only on the connection's queue.
private final class TransactionGuard {
    var refuses = false
}

/// SQLite's authorizer callback: refuses BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE while
/// the connection's guard is on; allows everything else.
private let refuseTransactionControl: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?,
                                                      UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32 = { state, action, _, _, _, _ in
    guard let state, action == SQLITE_TRANSACTION || action == SQLITE_SAVEPOINT else { return SQLITE_OK }
    return Unmanaged<TransactionGuard>.fromOpaque(state).takeUnretainedValue().refuses ? SQLITE_DENY : SQLITE_OK
}
