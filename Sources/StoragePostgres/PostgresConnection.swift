internal import CLibPQ
import Storage
import Glibc

/// A failed PostgreSQL call: the SQLSTATE (empty when the server never answered: a connection
/// failure), the server's message and detail, and the statement that failed.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public let sqlState: String
    public let message: String
    public let detail: String
    public let sql: String

    public init(sqlState: String, message: String, detail: String = "", sql: String) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.sql = sql
    }

    public var description: String {
        "PostgreSQL error \(sqlState.isEmpty ? "(no SQLSTATE)" : sqlState): \(message)\(detail.isEmpty ? "" : " (\(detail))") (in: \(sql))"
    }

    /// 23505: a UNIQUE or PRIMARY KEY violation.
    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// 40001 serialization failure, 40P01 deadlock: the whole transaction may simply be run again.
    /// So may one whose prepared statement went stale (`isStalePreparedStatement`): the
    /// connection has forgotten it, and the rerun prepares it again.
    public var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" || isStalePreparedStatement }

    /// 26000: the session no longer has the prepared statement (a pooler or `DISCARD ALL` ended
    /// it); 0A000 "cached plan must not change result type": a table it reads changed shape.
    var isStalePreparedStatement: Bool {
        sqlState == "26000" || (sqlState == "0A000" && message.contains("cached plan"))
    }
}

extension PostgresError: StorageFailure {
    /// The server could not serve now, whatever was asked: no SQLSTATE (libpq's own failure: the
    /// server could not be reached, refused the connection, or the connection broke), class 08
    /// (connection exception), 57P01-57P03 (shutting down, crashed, cannot connect now: starting
    /// or in recovery), class 53 (insufficient resources: disk, memory, too many connections),
    /// 40001/40P01 (a serialization failure or deadlock still there after the reruns
    /// `PostgresDatabase` makes), and 55P03 (a lock another transaction held past `lock_timeout`:
    /// contention, gone when that transaction ends). Every other SQLSTATE is the server judging
    /// the statement or its values. That includes 57014 (the statement was cancelled, by
    /// `statement_timeout` or by an operator): a statement slower than the limit is slow every
    /// time, and counting it is what lets it reach the dead letters and a person instead of
    /// holding its delivery's queue for ever. A connection refused for bad credentials also has
    /// no SQLSTATE, so it counts as unavailable too: the configuration, not the message, is at
    /// fault.
    public var isUnavailable: Bool {
        sqlState.isEmpty || sqlState.hasPrefix("08") || sqlState.hasPrefix("53") || isRetryable
            || sqlState == "57P01" || sqlState == "57P02" || sqlState == "57P03" || sqlState == "55P03"
    }
}

/// One libpq connection (`PGconn`). Not thread-safe: a `PostgresDatabase` confines each to one
/// thread of its own and hands it to one transaction at a time. Statements are written with `?`
/// placeholders (as for SQLite) and rewritten to `$1, $2, …` once per statement text; parameters
/// go in binary (int8, float8, text, bytea) and results come back in binary, decoded by type.
final class PostgresConnection: SQLTransaction {
    private let handle: OpaquePointer
    /// Run after every (re)connect: the session settings (search_path).
    private let setup: [String]
    private var rewritten: [String: String] = [:]
    /// Statement texts kept rewritten now (tests).
    var rewrittenCount: Int { rewritten.count }
    /// Statements this session has prepared, by text and parameter types, with their names.
    private var prepared: [PreparedKey: String] = [:]
    /// Names are never reused in a session: one prepared before a failure may still exist.
    private var preparedCount = 0

    /// The most statements a session keeps prepared; the stores use a few dozen.
    static let maxPrepared = 512

    private struct PreparedKey: Hashable {
        let sql: String
        let types: [UInt32]
    }

    /// `password`, when given, goes to libpq beside the connection string (PQconnectdbParams,
    /// the string expanded as `dbname`), so it never has to be written into a URL; `parameters`
    /// are more libpq keywords, set over what the string says.
    init(conninfo: String, password: String? = nil, setup: [String] = [], parameters: [(String, String)] = []) throws {
        guard let handle = Self.connect(conninfo, password: password, parameters: parameters) else {
            throw PostgresError(sqlState: "", message: "out of memory", sql: "connect")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(handle)).trimmingTrailingNewlines
            PQfinish(handle)
            throw PostgresError(sqlState: "", message: message, sql: "connect \(Self.redacted(conninfo))")
        }
        self.handle = handle
        self.setup = setup
        // Notices ("schema already exists, skipping") would go to stderr: drop them.
        PQsetNoticeProcessor(handle, { _, _ in }, nil)
        for statement in setup { try execute(statement) }
    }

    deinit { PQfinish(handle) }

    private static func connect(_ conninfo: String, password: String?, parameters: [(String, String)]) -> OpaquePointer? {
        if password == nil && parameters.isEmpty { return PQconnectdb(conninfo) }
        // Later keywords override what the expanded dbname string set; the arrays end with NULL.
        let pairs = [("dbname", conninfo)] + parameters + (password.map { [("password", $0)] } ?? [])
        let keywords: [UnsafeMutablePointer<CChar>?] = pairs.map { strdup($0.0) } + [nil]
        let values: [UnsafeMutablePointer<CChar>?] = pairs.map { strdup($0.1) } + [nil]
        defer {
            keywords.forEach { free($0) }
            if password != nil, let secret = values[pairs.count - 1] { memset(secret, 0, strlen(secret)) }
            values.forEach { free($0) }
        }
        let keywordList: [UnsafePointer<CChar>?] = keywords.map { $0.map { UnsafePointer($0) } }
        let valueList: [UnsafePointer<CChar>?] = values.map { $0.map { UnsafePointer($0) } }
        return PQconnectdbParams(keywordList, valueList, 1)
    }

    var dialect: Dialect { .postgres }

    /// The connection is gone (the server restarted, the socket broke).
    var isBroken: Bool { PQstatus(handle) != CONNECTION_OK }

    /// Reconnects with the same parameters and session settings; false if that failed.
    func reconnect() -> Bool {
        prepared = [:]  // a new session has none
        PQreset(handle)
        guard PQstatus(handle) == CONNECTION_OK else { return false }
        for statement in setup where (try? execute(statement)) == nil { return false }
        return true
    }

    /// Runs one or more statements without parameters (a migration step, BEGIN, COMMIT);
    /// returns the command tag of the last one ("COMMIT", or "ROLLBACK" for an aborted
    /// transaction's COMMIT).
    @discardableResult
    func execute(_ sql: String) throws -> String {
        let result = PQexec(handle, sql)
        defer { PQclear(result) }
        try check(result, sql)
        return String(cString: PQcmdStatus(result))
    }

    @discardableResult
    func run(_ sql: String, _ parameters: [SQLValue]) throws -> Int {
        try withResult(sql, parameters) { result in Int(String(cString: PQcmdTuples(result))) ?? 0 }
    }

    func query(_ sql: String, _ parameters: [SQLValue]) throws -> [Row] {
        try withResult(sql, parameters) { result in
            let rows = PQntuples(result), columns = PQnfields(result)
            var out: [Row] = []
            out.reserveCapacity(Int(rows))
            for row in 0..<rows {
                var values: [SQLValue] = []
                values.reserveCapacity(Int(columns))
                for column in 0..<columns { values.append(Self.value(result, row, column)) }
                out.append(Row(values: values))
            }
            return out
        }
    }

    /// A transaction advisory lock on the key's 64-bit hash, held until COMMIT or ROLLBACK.
    func lock(_ key: String) throws {
        _ = try query("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [.text(key)])
    }

    private func withResult<T>(_ sql: String, _ parameters: [SQLValue], _ read: (OpaquePointer) throws -> T) throws -> T {
        let count = parameters.count
        var types = [UInt32](repeating: 0, count: count)
        var lengths = [Int32](repeating: 0, count: count)
        var formats = [Int32](repeating: 1, count: count)
        var buffers: [UnsafeMutableRawPointer?] = Array(repeating: nil, count: count)
        defer { for buffer in buffers { buffer?.deallocate() } }
        func store(_ index: Int, _ type: UInt32, _ bytes: UnsafeRawBufferPointer) {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
            if let base = bytes.baseAddress, bytes.count > 0 { buffer.copyMemory(from: base, byteCount: bytes.count) }
            buffers[index] = buffer
            types[index] = type
            lengths[index] = Int32(bytes.count)
        }
        for (index, parameter) in parameters.enumerated() {
            switch parameter {
            case .null: formats[index] = 0
            case .integer(let value): withUnsafeBytes(of: value.bigEndian) { store(index, 20, $0) }
            case .real(let value): withUnsafeBytes(of: value.bitPattern.bigEndian) { store(index, 701, $0) }
            case .text(let value): Array(value.utf8).withUnsafeBytes { store(index, 25, $0) }
            case .blob(let value): value.withUnsafeBytes { store(index, 17, $0) }
            }
        }
        let values: [UnsafePointer<CChar>?] = buffers.map { $0.map { UnsafePointer($0.assumingMemoryBound(to: CChar.self)) } }
        let key = PreparedKey(sql: sql, types: types)
        let result: OpaquePointer?
        if let name = try preparedName(key) {
            result = PQexecPrepared(handle, name, Int32(count), values, lengths, formats, 1)
        } else {
            result = PQexecParams(handle, statementText(sql), Int32(count), types, values, lengths, formats, 1)
        }
        defer { PQclear(result) }
        do {
            try check(result, sql)
        } catch let error as PostgresError where error.isStalePreparedStatement {
            prepared[key] = nil  // prepared afresh when the transaction is run again
            throw error
        }
        return try read(result!)
    }

    /// The name of this session's prepared statement for `key`'s text and parameter types,
    /// preparing it on first use. A statement sent unnamed (PQexecParams) is parsed and
    /// planned on every call: for a primary-key read that was over half the server's CPU per
    /// statement (pgbench, docs/services.md), and the stores run a few fixed statements
    /// thousands of times. The parameter types are part of the key: NULL is sent untyped, so
    /// the same text with a NULL in another place is another statement. Nil past
    /// `maxPrepared` statements: a text made of values would otherwise grow the session for ever.
    private func preparedName(_ key: PreparedKey) throws -> String? {
        if let name = prepared[key] { return name }
        guard prepared.count < Self.maxPrepared else { return nil }
        preparedCount += 1
        let name = "fabrikam_\(preparedCount)"
        let result = PQprepare(handle, name, statementText(key.sql), Int32(key.types.count), key.types)
        defer { PQclear(result) }
        try check(result, key.sql)
        prepared[key] = name
        return name
    }

    private func check(_ result: OpaquePointer?, _ sql: String) throws {
        guard let result else {
            throw PostgresError(sqlState: "", message: String(cString: PQerrorMessage(handle)).trimmingTrailingNewlines, sql: sql)
        }
        let status = PQresultStatus(result)
        if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK { return }
        func field(_ code: UInt8) -> String { PQresultErrorField(result, Int32(code)).map { String(cString: $0) } ?? "" }
        var message = field(UInt8(ascii: "M"))
        if message.isEmpty { message = String(cString: PQresultErrorMessage(result)).trimmingTrailingNewlines }
        if message.isEmpty { message = String(cString: PQerrorMessage(handle)).trimmingTrailingNewlines }
        throw PostgresError(sqlState: field(UInt8(ascii: "C")), message: message, detail: field(UInt8(ascii: "D")), sql: sql)
    }

    /// `?` placeholders become `$1, $2, …`, outside quoted strings and identifiers.
    private func statementText(_ sql: String) -> String {
        if let cached = rewritten[sql] { return cached }
        var out = ""
        out.reserveCapacity(sql.utf8.count + 8)
        var number = 0
        var quote: Character?
        for character in sql {
            if let open = quote {
                if character == open { quote = nil }
                out.append(character)
            } else if character == "'" || character == "\"" {
                quote = character
                out.append(character)
            } else if character == "?" {
                number += 1
                out += "$\(number)"
            } else {
                out.append(character)
            }
        }
        // Bounded as the prepared statements are: a text made of values must not grow it for ever.
        if rewritten.count >= Self.maxPrepared { rewritten = [:] }
        rewritten[sql] = out
        return out
    }

    private static func value(_ result: OpaquePointer, _ row: Int32, _ column: Int32) -> SQLValue {
        if PQgetisnull(result, row, column) == 1 { return .null }
        let length = Int(PQgetlength(result, row, column))
        let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, row, column), count: length)
        func integer<I: FixedWidthInteger>(_ type: I.Type) -> I {
            var value: I = 0
            withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(MemoryLayout<I>.size))) }
            return I(bigEndian: value)
        }
        switch PQftype(result, column) {
        case 20: return .integer(integer(Int64.self))                       // int8
        case 23: return .integer(Int64(integer(Int32.self)))                // int4
        case 21: return .integer(Int64(integer(Int16.self)))                // int2
        case 16: return .integer(bytes.first == 0 ? 0 : 1)                  // bool
        case 701: return .real(Double(bitPattern: integer(UInt64.self)))    // float8
        case 700: return .real(Double(Float(bitPattern: integer(UInt32.self))))  // float4
        case 25, 1043, 1042, 19, 705: return .text(String(decoding: bytes, as: UTF8.self))  // text, varchar, bpchar, name, unknown
        case 1700: return numeric(bytes)                                     // numeric (SUM of integers)
        case 2278: return .null                                              // void
        default: return .blob(Array(bytes))                                  // bytea and anything else: the bytes
        }
    }

    /// numeric's binary form: ndigits, weight, sign, dscale (int16 each), then base-10000 digits.
    private static func numeric(_ bytes: UnsafeRawBufferPointer) -> SQLValue {
        func int16(_ offset: Int) -> Int {
            guard offset + 2 <= bytes.count else { return 0 }
            return Int(Int16(bitPattern: UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])))
        }
        let digits = int16(0), weight = int16(2), sign = int16(4) & 0xFFFF, scale = int16(6)
        if sign == 0xC000 { return .real(.nan) }
        var value = 0.0
        for index in 0..<digits { value += Double(int16(8 + 2 * index)) * pow10000(weight - index) }
        if sign == 0x4000 { value = -value }
        if scale == 0, value.rounded() == value, abs(value) < 9.0e18 { return .integer(Int64(value)) }
        return .real(value)
    }

    private static func pow10000(_ exponent: Int) -> Double {
        var result = 1.0
        if exponent >= 0 { for _ in 0..<exponent { result *= 10000 } } else { for _ in 0..<(-exponent) { result /= 10000 } }
        return result
    }

    /// The connection string without a password, for messages.
    static func redacted(_ conninfo: String) -> String {
        guard let at = conninfo.firstIndex(of: "@"), let scheme = conninfo.range(of: "://"), scheme.upperBound < at else { return conninfo }
        let credentials = conninfo[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return conninfo }
        return String(conninfo[..<colon]) + ":***" + String(conninfo[at...])
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var text = self
        while text.last == "\n" { text.removeLast() }
        return text
    }
}
