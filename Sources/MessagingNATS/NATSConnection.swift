import CNATS
import Dispatch
import Foundation
import Logging
import Synchronization

/// A failed call into the NATS C client: the operation, the client's status text and, for a
/// JetStream API error, the server's error code (e.g. 10058 "stream name already in use").
public struct NATSError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var status: UInt32
    public var jetStreamCode: Int
    public var text: String

    public var description: String {
        "\(operation): \(text)" + (jetStreamCode != 0 ? " (JetStream error \(jetStreamCode))" : "")
    }

    /// The client's "not found" (a direct get past the last message, a missing stream or consumer).
    public var isNotFound: Bool { status == NATS_NOT_FOUND.rawValue }
}

/// Throws unless `status` is NATS_OK, with the client's last error text when it has one.
func check(_ status: natsStatus, _ operation: @autoclosure () -> String, _ jetStreamCode: jsErrCode = jsErrCode(0)) throws {
    guard status != NATS_OK else { return }
    var text = String(cString: natsStatus_GetText(status))
    var last = NATS_OK
    if let detail = nats_GetLastError(&last), last == status {
        let detailText = String(cString: detail)
        if !detailText.isEmpty { text = detailText }
    }
    throw NATSError(operation: operation(), status: status.rawValue, jetStreamCode: Int(jetStreamCode.rawValue), text: text)
}

/// Runs the C client's blocking calls (requests to the server, fetches) on threads of their own,
/// never on Swift's cooperative pool (two threads on a 2-core machine: one blocked fetch would
/// halve the process).
enum Blocking {
    static let queue = DispatchQueue(label: "fabrikam.nats.blocking", qos: .userInitiated, attributes: .concurrent)

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// C strings that live until this object does, for the C structs whose fields point at strings
/// (stream and consumer configurations) during one call.
final class CStrings {
    private var pointers: [UnsafeMutablePointer<CChar>] = []
    func callAsFunction(_ string: String) -> UnsafePointer<CChar> {
        let pointer = strdup(string)!
        pointers.append(pointer)
        return UnsafePointer(pointer)
    }
    deinit { pointers.forEach { free($0) } }
}

/// How a client proves who it is to a NATS server whose configuration requires it
/// (`authorization { user, password }`). Kept out of the URL so
/// that it is in no log line and no process list (`NATSConnection.redacted` hides a URL's own).
public enum NATSCredentials: Sendable, Equatable {
    /// The server accepts anyone who reaches it (a laptop, a test).
    case none
    case userPassword(user: String, password: String)
}

/// One connection to a NATS server (or cluster) with its JetStream context: the thin layer over
/// libnats that `JetStreamBroker` uses. Reconnects forever on its own; what happens to the
/// connection (disconnected, reconnected, closed, asynchronous errors) goes to the log.
///
/// Every method blocks (it is a request to the server): call them through `Blocking.run`.
public final class NATSConnection: @unchecked Sendable {
    public struct Options: Sendable {
        /// `nats://host:port`, or several separated by commas.
        public var url: String
        /// Shown by the server (`connz`).
        public var name = "fabrikam"
        /// Time to connect, and for each JetStream API request.
        public var timeout: Duration = .seconds(5)
        public var reconnectWait: Duration = .milliseconds(500)
        /// Callback subscriptions share the library's small pool of delivery threads instead of
        /// a thread each (the live feed opens one subscription per tracking stream).
        public var sharedDeliveryThreads = false
        /// Sent when the server asks for them; a refusal fails the connect with the server's
        /// "Authorization Violation".
        public var credentials = NATSCredentials.none
        public init(url: String) { self.url = url }
    }

    /// `url` with any password or token in it replaced by `***` (`nats://user:***@host:4222`),
    /// for logs and error messages.
    public static func redacted(_ url: String) -> String {
        url.split(separator: ",", omittingEmptySubsequences: false).map { part -> String in
            guard let scheme = part.range(of: "://"), let at = part[scheme.upperBound...].lastIndex(of: "@") else { return String(part) }
            let userInfo = part[scheme.upperBound..<at]
            let shown = userInfo.firstIndex(of: ":").map { String(userInfo[..<$0]) + ":***" } ?? "***"
            return String(part[..<scheme.upperBound]) + shown + String(part[at...])
        }.joined(separator: ",")
    }

    /// natsConnection *
    let connection: OpaquePointer
    /// jsCtx *
    let jetStream: OpaquePointer
    let requestTimeoutMilliseconds: Int64
    private let callbacks: Unmanaged<CallbackBox>
    /// The callers waiting for the acknowledgement of their asynchronous publish (`publishAwaitingAck`).
    private let publishes: Unmanaged<PendingPublishes>

    /// What the C client's callbacks (run on its own threads) need: the logger. Retained for as
    /// long as the connection lives, released after it is destroyed.
    final class CallbackBox: @unchecked Sendable {
        let logger: Logger
        let url: String
        init(logger: Logger, url: String) { self.logger = logger; self.url = url }
    }

    /// Connects (blocking; at most `options.timeout`).
    public init(_ options: Options, logger: Logger = Logger(label: "fabrikam.nats")) throws {
        var opts: OpaquePointer?
        try check(natsOptions_Create(&opts), "natsOptions_Create")
        defer { natsOptions_Destroy(opts) }
        let milliseconds = { (duration: Duration) in Int64(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000) }
        let shownURL = Self.redacted(options.url)
        try check(natsOptions_SetURL(opts, options.url), "natsOptions_SetURL(\(shownURL))")
        switch options.credentials {
        case .none: break
        case .userPassword(let user, let password):
            try check(natsOptions_SetUserInfo(opts, user, password), "natsOptions_SetUserInfo")
        }
        try check(natsOptions_SetName(opts, options.name), "natsOptions_SetName")
        try check(natsOptions_SetTimeout(opts, milliseconds(options.timeout)), "natsOptions_SetTimeout")
        try check(natsOptions_SetMaxReconnect(opts, -1), "natsOptions_SetMaxReconnect")
        try check(natsOptions_SetReconnectWait(opts, milliseconds(options.reconnectWait)), "natsOptions_SetReconnectWait")
        if options.sharedDeliveryThreads {
            try check(natsOptions_UseGlobalMessageDelivery(opts, true), "natsOptions_UseGlobalMessageDelivery")
        }
        let box = Unmanaged.passRetained(CallbackBox(logger: logger, url: shownURL))
        callbacks = box
        let closure = box.toOpaque()
        // Trampolines: C function pointers (no captures) that find the box through the closure.
        try check(natsOptions_SetErrorHandler(opts, { _, subscription, status, closure in
            guard let closure else { return }
            let box = Unmanaged<CallbackBox>.fromOpaque(closure).takeUnretainedValue()
            box.logger.warning("NATS asynchronous error", metadata: [
                "url": "\(box.url)", "error": "\(String(cString: natsStatus_GetText(status)))",
                "subscription": "\(subscription == nil ? "none" : "yes")"])
        }, closure), "natsOptions_SetErrorHandler")
        try check(natsOptions_SetDisconnectedCB(opts, { _, closure in
            guard let closure else { return }
            let box = Unmanaged<CallbackBox>.fromOpaque(closure).takeUnretainedValue()
            box.logger.warning("NATS disconnected; reconnecting", metadata: ["url": "\(box.url)"])
        }, closure), "natsOptions_SetDisconnectedCB")
        try check(natsOptions_SetReconnectedCB(opts, { _, closure in
            guard let closure else { return }
            let box = Unmanaged<CallbackBox>.fromOpaque(closure).takeUnretainedValue()
            box.logger.notice("NATS reconnected", metadata: ["url": "\(box.url)"])
        }, closure), "natsOptions_SetReconnectedCB")
        try check(natsOptions_SetClosedCB(opts, { _, closure in
            guard let closure else { return }
            let box = Unmanaged<CallbackBox>.fromOpaque(closure).takeUnretainedValue()
            box.logger.info("NATS connection closed", metadata: ["url": "\(box.url)"])
        }, closure), "natsOptions_SetClosedCB")

        var nc: OpaquePointer?
        do {
            try check(natsConnection_Connect(&nc, opts), "connect to \(shownURL)")
        } catch {
            box.release()
            throw error
        }
        let pending = Unmanaged.passRetained(PendingPublishes())
        var jsOpts = jsOptions()
        jsOptions_Init(&jsOpts)
        jsOpts.Wait = milliseconds(options.timeout)
        // Every asynchronous publish's outcome (its PubAck, the server's refusal, or the
        // library's timeout after MaxWait) comes to this one handler, on the client's thread for
        // the acknowledgement subscription; it hands it to the caller waiting for that message.
        jsOpts.PublishAsync.AckHandler = { _, msg, pubAck, pubAckError, closure in
            guard let closure, let msg else { return }
            Unmanaged<PendingPublishes>.fromOpaque(closure).takeUnretainedValue().complete(msg, pubAck, pubAckError)
            // The handler owns the message (nats.h, jsPubAckHandler); it is no longer in the table.
            natsMsg_Destroy(msg)
        }
        jsOpts.PublishAsync.AckHandlerClosure = pending.toOpaque()
        var js: OpaquePointer?
        do {
            try check(natsConnection_JetStream(&js, nc, &jsOpts), "natsConnection_JetStream")
        } catch {
            natsConnection_Destroy(nc)
            box.release()
            pending.release()
            throw error
        }
        connection = nc!
        jetStream = js!
        publishes = pending
        requestTimeoutMilliseconds = milliseconds(options.timeout)
    }

    deinit {
        jsCtx_Destroy(jetStream)
        natsConnection_Close(connection)
        natsConnection_Destroy(connection)
        // Nobody can be waiting for an acknowledgement here (a waiting publish holds the broker,
        // and so this connection), but fail whatever the table still holds rather than leak it.
        publishes.takeUnretainedValue().failAll(NATSError(operation: "publish", status: NATS_CONNECTION_CLOSED.rawValue, jetStreamCode: 0,
                                                          text: "the connection was closed before the acknowledgement came"))
        // The closed callback (and a last acknowledgement handler) may still be running on the
        // client's threads; give the boxes to them for a moment rather than freeing them under their feet.
        let box = callbacks, pending = publishes
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) { box.release(); pending.release() }
    }

    /// What JetStream answered to a published message: where it is stored, and whether the
    /// stream already had a message with its id (de-duplication; nothing new was stored).
    struct PublishAck: Sendable {
        var sequence: UInt64
        var duplicate: Bool
    }

    /// Callers of `publishAwaitingAck` waiting for their message's acknowledgement, by the
    /// address of their `natsMsg` (the library hands the same pointer to the handler; an entry is
    /// removed before its message is destroyed, so an address is never in the table twice).
    final class PendingPublishes: @unchecked Sendable {
        private let waiting = Mutex<[UInt: CheckedContinuation<PublishAck, any Error>]>([:])

        func add(_ msg: OpaquePointer, _ continuation: CheckedContinuation<PublishAck, any Error>) {
            waiting.withLock { $0[UInt(bitPattern: msg)] = continuation }
        }

        func remove(_ msg: OpaquePointer) -> CheckedContinuation<PublishAck, any Error>? {
            waiting.withLock { $0.removeValue(forKey: UInt(bitPattern: msg)) }
        }

        func complete(_ msg: OpaquePointer, _ pubAck: UnsafeMutablePointer<jsPubAck>?, _ pubAckError: UnsafeMutablePointer<jsPubAckErr>?) {
            guard let continuation = remove(msg) else { return }
            if let pubAck {
                continuation.resume(returning: PublishAck(sequence: pubAck.pointee.Sequence, duplicate: pubAck.pointee.Duplicate))
                return
            }
            let subject = natsMsg_GetSubject(msg).map { String(cString: $0) } ?? "?"
            let status = pubAckError?.pointee.Err ?? NATS_ERR
            let text = pubAckError?.pointee.ErrText.map { String(cString: $0) } ?? String(cString: natsStatus_GetText(status))
            continuation.resume(throwing: NATSError(operation: "publish to \(subject)", status: status.rawValue,
                                                    jetStreamCode: Int(pubAckError?.pointee.ErrCode.rawValue ?? 0),
                                                    text: text.isEmpty ? String(cString: natsStatus_GetText(status)) : text))
        }

        func failAll(_ error: any Error) {
            let all = waiting.withLock { table in
                defer { table.removeAll() }
                return Array(table.values)
            }
            for continuation in all { continuation.resume(throwing: error) }
        }
    }

    /// Publishes `msg` (taking it over) without holding a thread for the round trip, and returns
    /// once JetStream has acknowledged it: stored (or recognised as a duplicate) in its stream.
    /// A refusal, or no acknowledgement within `maxWait` milliseconds (the library's timer),
    /// throws for this message alone; others published meanwhile are not affected.
    ///
    /// Many callers publishing at once thus share the connection's writes and the server's
    /// stream writes, the way the SQLite broker's group commit shares one fsync: no caller is
    /// answered before its own message is acknowledged. The call itself does not block: it
    /// appends the message to the connection's outgoing buffer (the library's flusher thread
    /// writes it; only a full buffer is written inline), never waiting for the server, so it
    /// may run on the cooperative pool. No limit of outstanding publishes is set (MaxPending),
    /// so it never stalls; the callers' own concurrency bounds them (RPC streams).
    func publishAwaitingAck(_ msg: OpaquePointer, messageID: String, maxWait: Int64) async throws -> PublishAck {
        try await withCheckedThrowingContinuation { continuation in
            let pending = publishes.takeUnretainedValue()
            // In the table before the publish: the acknowledgement may arrive before the call returns.
            pending.add(msg, continuation)
            var options = jsPubOptions()
            jsPubOptions_Init(&options)
            options.MaxWait = maxWait
            var owned: OpaquePointer? = msg
            let status = messageID.withCString { id in
                options.MsgId = id
                return js_PublishMsgAsync(jetStream, &owned, &options)
            }
            guard status != NATS_OK else { return }
            // Not published: the message is still ours (the library clears `owned` only when it
            // takes it, and then the handler answers). Out of the table before it is destroyed,
            // so that a new message at the same address cannot be answered in its place.
            let waiter = pending.remove(msg)
            natsMsg_Destroy(owned)
            do {
                try check(status, "publish \(messageID)")
            } catch {
                waiter?.resume(throwing: error)
            }
        }
    }

    /// A request to `subject` with `body`, waiting for the reply (JetStream acknowledgements:
    /// the server answers once it has applied them).
    func request(_ subject: String, _ body: String) throws {
        var reply: OpaquePointer?
        try check(natsConnection_Request(&reply, connection, subject, body, Int32(body.utf8.count), requestTimeoutMilliseconds), "request \(body) on \(subject)")
        natsMsg_Destroy(reply)
    }
}

/// A message read from the server: its subject, headers, payload and JetStream position.
struct NATSMessage {
    var subject: String
    var reply: String
    var headers: [String: String]
    var payload: [UInt8]
    /// The stream sequence (consumed messages: from the metadata; gets: from the response).
    var sequence: UInt64
    var numDelivered: UInt64
    /// Nanoseconds since 1970 (consumed messages only; 0 otherwise).
    var timestamp: Int64

    /// Copies what Swift needs out of `msg` (which the caller still owns).
    init(_ msg: OpaquePointer, consumed: Bool) {
        subject = natsMsg_GetSubject(msg).map { String(cString: $0) } ?? ""
        reply = natsMsg_GetReply(msg).map { String(cString: $0) } ?? ""
        let length = Int(natsMsg_GetDataLength(msg))
        if length > 0, let data = natsMsg_GetData(msg) {
            payload = data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
        } else {
            payload = []
        }
        headers = [:]
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        if natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK, let keys {
            for index in 0..<Int(count) {
                guard let key = keys[index] else { continue }
                var value: UnsafePointer<CChar>?
                if natsMsgHeader_Get(msg, key, &value) == NATS_OK, let value {
                    headers[String(cString: key)] = String(cString: value)
                }
            }
            free(keys)
        }
        sequence = 0
        numDelivered = 0
        timestamp = 0
        if consumed {
            var meta: UnsafeMutablePointer<jsMsgMetaData>?
            if natsMsg_GetMetaData(&meta, msg) == NATS_OK, let meta {
                sequence = meta.pointee.Sequence.Stream
                numDelivered = meta.pointee.NumDelivered
                timestamp = meta.pointee.Timestamp
                jsMsgMetaData_Destroy(meta)
            }
        } else {
            sequence = natsMsg_GetSequence(msg)
            if sequence == 0, let text = headers["Nats-Sequence"], let number = UInt64(text) { sequence = number }
        }
    }
}

/// A natsMsg to publish, with headers (values escaped so that CR, LF and % survive).
func makeMessage(subject: String, headers: [String: String], payload: [UInt8]) throws -> OpaquePointer {
    var msg: OpaquePointer?
    let status = payload.withUnsafeBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { natsMsg_Create(&msg, subject, nil, $0.baseAddress, Int32($0.count)) }
    }
    try check(status, "natsMsg_Create(\(subject))")
    for (name, value) in headers {
        do {
            try check(natsMsgHeader_Set(msg, name, escapeHeaderValue(value)), "natsMsgHeader_Set(\(name))")
        } catch {
            natsMsg_Destroy(msg)
            throw error
        }
    }
    return msg!
}

func escapeHeaderValue(_ value: String) -> String {
    guard value.contains(where: { $0 == "%" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) else { return value }
    var out = ""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "%": out += "%25"
        case "\r": out += "%0D"
        case "\n": out += "%0A"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

func unescapeHeaderValue(_ value: String) -> String {
    guard value.contains("%") else { return value }
    return value.replacingOccurrences(of: "%0D", with: "\r").replacingOccurrences(of: "%0A", with: "\n").replacingOccurrences(of: "%25", with: "%")
}
