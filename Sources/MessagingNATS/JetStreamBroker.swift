import CNATS
import Foundation
import Logging
import Messaging
import Synchronization

/// Queues and event streams on NATS JetStream (nats-server 2.9 or later), for several hosts.
///
/// Topology (all names start with the namespace, so several systems or tests share a server):
/// - a queue is a **work-queue stream** `<ns>_Q_<queue>` with subjects `<ns>.q.<queue>.<key>` (a
///   subject per message key) and one durable pull consumer `workers` that every replica fetches
///   from. A work-queue stream holds exactly the messages not yet settled, so "the first message
///   on a key's subject" is the earliest unsettled message of that key.
/// - a topic is a **limits stream** `<ns>_T_<topic>` (subjects `<ns>.t.<topic>.<key>`, retained
///   for `topicRetention`); each subscriber group is a work-queue stream `<ns>_G_<topic>__<group>`
///   that sources the topic (from its first retained event) and is read like a queue, through the
///   queue name `topic#group`.
/// - dead letters are a limits stream `<ns>_DLQ`, subject `<ns>.dlq.<queue>.<key>`, the reason,
///   count and original id in headers; they are listed by direct gets and redriven by republishing.
/// - postponements (not counted as deliveries) are counted per message in the KV bucket
///   `<ns>_postponed`, since JetStream counts every redelivery.
///
/// What the adapter does itself, because JetStream does not do it the way the interface promises:
/// per-key order (after a fetch, a message whose key has an earlier unsettled message is postponed),
/// the delivery limit (the server's MaxDeliver is off; a message whose counted deliveries exceed
/// `maxDeliveries` is moved to the dead letters when fetched), uncounted postponement.
/// Names in subjects and streams are tokens: `[A-Za-z0-9-]` as they are, every other byte `_XX`
/// (hex), the empty string `_`.
///
/// Every call into the C client that waits for the server runs on a thread of its own
/// (`Blocking`), never on the cooperative pool; sends and publishes wait for their
/// acknowledgement without a thread (`publishAwaitingAck`). Streams and consumers are created on
/// first use (idempotent; any replica may).
public final class JetStreamBroker: MessageQueue, EventStream, Sendable {
    public struct Configuration: Sendable {
        public var url: String
        /// Prefix of every stream, subject and bucket: `[A-Za-z0-9-]`.
        public var namespace = "fabrikam"
        /// Counted deliveries after which a message is dead-lettered (0: no limit).
        public var maxDeliveries = 10
        /// How long a message id is remembered for de-duplication (the streams' `Duplicates`).
        public var deduplicationWindow: Duration = .seconds(120)
        /// How long a topic keeps its events (a group that subscribes later starts from the oldest kept).
        public var topicRetention: Duration = .seconds(7 * 24 * 3600)
        /// Unsettled messages a queue's consumer hands out at once (over every replica).
        public var maxAckPending = 10_000
        /// What the server requires of a client, if anything.
        public var credentials = NATSCredentials.none
        public init(url: String) { self.url = url }
    }

    public let configuration: Configuration
    let connection: NATSConnection
    let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var streams: Set<String> = []
        /// natsSubscription * per queue stream, bound to its durable consumer.
        var subscriptions: [String: SubscriptionBox] = [:]
        var postponed: KVBox?
    }

    final class SubscriptionBox: @unchecked Sendable {
        let pointer: OpaquePointer
        let lock = NSLock()
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
        deinit { natsSubscription_Destroy(pointer) }
    }

    final class KVBox: @unchecked Sendable {
        let pointer: OpaquePointer
        init(_ pointer: OpaquePointer) { self.pointer = pointer }
        deinit { kvStore_Destroy(pointer) }
    }

    /// Connects and creates the dead-letter stream and the postponement bucket.
    public init(_ configuration: Configuration, logger: Logger = Logger(label: "fabrikam.jetstream")) async throws {
        self.configuration = configuration
        self.logger = logger
        var options = NATSConnection.Options(url: configuration.url)
        options.credentials = configuration.credentials
        options.name = "fabrikam-\(configuration.namespace)"
        let connectOptions = options
        connection = try await Blocking.run { try NATSConnection(connectOptions, logger: logger) }
        try await Blocking.run { [self] in
            try ensureStream(dlqStream, subjects: ["\(ns).dlq.>"], workQueue: false, maxAge: nil, sources: [])
            _ = try postponedBucket()
        }
    }

    public var guarantees: MessagingGuarantees {
        MessagingGuarantees(deduplicationWindow: configuration.deduplicationWindow, durableAgainstPowerLoss: false, spansHosts: true,
                            fencedAcknowledgement: false, exactLookups: false)
    }

    // MARK: Names

    var ns: String { configuration.namespace }
    var dlqStream: String { "\(ns)_DLQ" }
    static let consumerName = "workers"

    /// `[A-Za-z0-9-]` kept, every other byte `_XX`, empty `_`: valid in subjects and stream names, and unambiguous.
    static func token(_ text: String) -> String {
        if text.isEmpty { return "_" }
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "_" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// Where a queue's messages live: its stream, the subject root of its keys, and whether it
    /// is a subscriber group (whose stream only sources a topic).
    struct QueueTopology {
        var stream: String
        var subjectRoot: String
        var group: (topic: String, group: String)?
        func subject(key: String) -> String { "\(subjectRoot).\(JetStreamBroker.token(key))" }
    }

    func topology(of queue: String) -> QueueTopology {
        if let hash = queue.firstIndex(of: "#") {
            let topic = String(queue[..<hash]), group = String(queue[queue.index(after: hash)...])
            return QueueTopology(stream: "\(ns)_G_\(Self.token(topic))__\(Self.token(group))", subjectRoot: "\(ns).t.\(Self.token(topic))",
                                 group: (topic, group))
        }
        return QueueTopology(stream: "\(ns)_Q_\(Self.token(queue))", subjectRoot: "\(ns).q.\(Self.token(queue))", group: nil)
    }

    func topicStream(_ topic: String) -> String { "\(ns)_T_\(Self.token(topic))" }
    func dlqSubject(queue: String, key: String?) -> String { "\(ns).dlq.\(Self.token(queue))." + (key.map(Self.token) ?? ">") }

    // MARK: Topology (blocking)

    private func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }

    func ensureStream(_ name: String, subjects: [String], workQueue: Bool, maxAge: Duration?, sources: [String]) throws {
        if state.withLock({ $0.streams.contains(name) }) { return }
        var info: UnsafeMutablePointer<jsStreamInfo>?
        var code = jsErrCode(0)
        let status = js_GetStreamInfo(&info, connection.jetStream, name, nil, &code)
        if status == NATS_OK {
            jsStreamInfo_Destroy(info)
        } else if status == NATS_NOT_FOUND {
            let strings = CStrings()
            var config = jsStreamConfig()
            jsStreamConfig_Init(&config)
            config.Name = strings(name)
            config.Retention = workQueue ? js_WorkQueuePolicy : js_LimitsPolicy
            config.Storage = js_FileStorage
            config.Duplicates = nanoseconds(configuration.deduplicationWindow)
            config.AllowDirect = true
            if let maxAge { config.MaxAge = nanoseconds(maxAge) }
            var subjectPointers: [UnsafePointer<CChar>?] = subjects.map { strings($0) }
            var sourceStructs: [jsStreamSource] = sources.map { source in
                var value = jsStreamSource()
                jsStreamSource_Init(&value)
                value.Name = strings(source)
                return value
            }
            let created: natsStatus = subjectPointers.withUnsafeMutableBufferPointer { subjectBuffer in
                sourceStructs.withUnsafeMutableBufferPointer { sourceBuffer in
                    var sourcePointers: [UnsafeMutablePointer<jsStreamSource>?] = (0..<sourceBuffer.count).map { sourceBuffer.baseAddress! + $0 }
                    return sourcePointers.withUnsafeMutableBufferPointer { sourcePointerBuffer in
                        if !subjects.isEmpty {
                            config.Subjects = subjectBuffer.baseAddress
                            config.SubjectsLen = Int32(subjects.count)
                        }
                        if !sources.isEmpty {
                            config.Sources = sourcePointerBuffer.baseAddress
                            config.SourcesLen = Int32(sources.count)
                        }
                        var created: UnsafeMutablePointer<jsStreamInfo>?
                        code = jsErrCode(0)
                        let status = js_AddStream(&created, connection.jetStream, &config, nil, &code)
                        if status == NATS_OK { jsStreamInfo_Destroy(created) }
                        return status
                    }
                }
            }
            // 10058: another replica created it meanwhile.
            if created != NATS_OK && code.rawValue != 10058 { try check(created, "create stream \(name)", code) }
        } else {
            try check(status, "stream info \(name)", code)
        }
        _ = state.withLock { $0.streams.insert(name) }
    }

    func ensureQueue(_ queue: String) throws -> QueueTopology {
        let topology = topology(of: queue)
        if let group = topology.group {
            try ensureTopic(group.topic)
            try ensureStream(topology.stream, subjects: [], workQueue: true, maxAge: nil, sources: [topicStream(group.topic)])
        } else {
            try ensureStream(topology.stream, subjects: ["\(topology.subjectRoot).>"], workQueue: true, maxAge: nil, sources: [])
        }
        return topology
    }

    func ensureTopic(_ topic: String) throws {
        try ensureStream(topicStream(topic), subjects: ["\(ns).t.\(Self.token(topic)).>"], workQueue: false, maxAge: configuration.topicRetention, sources: [])
    }

    /// The queue's durable pull consumer (created with AckWait = `lease` if missing) and this
    /// process's subscription bound to it.
    func subscription(_ topology: QueueTopology, lease: Duration) throws -> SubscriptionBox {
        if let existing = state.withLock({ $0.subscriptions[topology.stream] }) { return existing }
        let strings = CStrings()
        var config = jsConsumerConfig()
        jsConsumerConfig_Init(&config)
        config.Durable = strings(Self.consumerName)
        config.AckPolicy = js_AckExplicit
        config.DeliverPolicy = js_DeliverAll
        config.AckWait = nanoseconds(lease)
        config.MaxDeliver = -1
        config.MaxAckPending = Int64(configuration.maxAckPending)
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        var code = jsErrCode(0)
        let status = js_AddConsumer(&info, connection.jetStream, topology.stream, &config, nil, &code)
        if status == NATS_OK {
            jsConsumerInfo_Destroy(info)
        } else {
            // It exists already (another replica, another lease): bind to it as it is.
            var existing: UnsafeMutablePointer<jsConsumerInfo>?
            var infoCode = jsErrCode(0)
            let found = js_GetConsumerInfo(&existing, connection.jetStream, topology.stream, Self.consumerName, nil, &infoCode)
            if found == NATS_OK { jsConsumerInfo_Destroy(existing) } else { try check(status, "create consumer on \(topology.stream)", code) }
        }
        var subOptions = jsSubOptions()
        jsSubOptions_Init(&subOptions)
        subOptions.Stream = strings(topology.stream)
        subOptions.Consumer = strings(Self.consumerName)
        var sub: OpaquePointer?
        code = jsErrCode(0)
        try check(js_PullSubscribe(&sub, connection.jetStream, "\(topology.subjectRoot).>", Self.consumerName, nil, &subOptions, &code),
                  "pull subscribe to \(topology.stream)", code)
        let box = SubscriptionBox(sub!)
        return state.withLock { state in
            if let raced = state.subscriptions[topology.stream] { return raced }
            state.subscriptions[topology.stream] = box
            return box
        }
    }

    func postponedBucket() throws -> KVBox {
        if let bucket = state.withLock({ $0.postponed }) { return bucket }
        var kv: OpaquePointer?
        if js_KeyValue(&kv, connection.jetStream, "\(ns)_postponed") != NATS_OK {
            let strings = CStrings()
            var config = kvConfig()
            kvConfig_Init(&config)
            config.Bucket = strings("\(ns)_postponed")
            config.History = 1
            config.TTL = nanoseconds(configuration.topicRetention)
            try check(js_CreateKeyValue(&kv, connection.jetStream, &config), "create bucket \(ns)_postponed")
        }
        let box = KVBox(kv!)
        return state.withLock { state in
            if let raced = state.postponed { return raced }
            state.postponed = box
            return box
        }
    }

    // MARK: Reading messages (blocking)

    /// The message at `sequence`, or the first on `subject` at or after `sequence`.
    func directGet(stream: String, sequence: UInt64, nextBySubject subject: String? = nil) throws -> NATSMessage? {
        var options = jsDirectGetMsgOptions()
        jsDirectGetMsgOptions_Init(&options)
        options.Sequence = sequence
        var msg: OpaquePointer?
        let status: natsStatus = if let subject {
            subject.withCString { pointer in
                options.NextBySubject = pointer
                return js_DirectGetMsg(&msg, connection.jetStream, stream, nil, &options)
            }
        } else {
            js_DirectGetMsg(&msg, connection.jetStream, stream, nil, &options)
        }
        if status == NATS_NOT_FOUND { return nil }
        try check(status, "direct get from \(stream)")
        defer { natsMsg_Destroy(msg) }
        return NATSMessage(msg!, consumed: false)
    }

    /// The message's own headers: everything but the engine's (`Nats-…`, `Fabrikam-…`).
    static func applicationHeaders(_ headers: [String: String]) -> [String: String] {
        headers.filter { !$0.key.lowercased().hasPrefix("nats-") && !$0.key.lowercased().hasPrefix("fabrikam-") }.mapValues(unescapeHeaderValue)
    }

    func postponements(stream: String, sequence: UInt64) throws -> Int {
        var entry: OpaquePointer?
        let status = kvStore_Get(&entry, try postponedBucket().pointer, "\(stream).\(sequence)")
        if status == NATS_NOT_FOUND { return 0 }
        try check(status, "read postponements of \(stream).\(sequence)")
        defer { kvEntry_Destroy(entry) }
        return Int(String(cString: kvEntry_ValueString(entry))) ?? 0
    }

    func recordPostponement(stream: String, sequence: UInt64) throws -> Int {
        // Only the consumer holding the message writes its count, so read-then-put is enough.
        let count = try postponements(stream: stream, sequence: sequence) + 1
        try check(kvStore_PutString(nil, try postponedBucket().pointer, "\(stream).\(sequence)", String(count)), "record a postponement")
        return count
    }

    // MARK: Publishing

    private func makeMessage(_ message: OutgoingMessage, subject: String, extraHeaders: [String: String]) throws -> OpaquePointer {
        var headers = message.headers
        headers["Fabrikam-Msg-Id"] = message.id
        headers["Fabrikam-Key"] = message.key
        headers["Fabrikam-Time"] = String(Date().timeIntervalSince1970)
        for (name, value) in extraHeaders { headers[name] = value }
        return try MessagingNATS.makeMessage(subject: subject, headers: headers, payload: message.payload)
    }

    /// A duplicate's answer: the first message's payload, best effort, while the stream still holds it.
    private func duplicateResult(_ message: OutgoingMessage, stream: String, sequence: UInt64) -> SendResult {
        let original = (try? directGet(stream: stream, sequence: sequence)).flatMap { $0 }
        return SendResult(sequence: Int64(sequence), duplicate: true,
                          duplicateOf: original.flatMap { $0.headers["Fabrikam-Msg-Id"] == message.id ? $0.payload : nil })
    }

    /// Publishes and returns once JetStream acknowledged the message, without holding a thread
    /// for the round trip (`NATSConnection.publishAwaitingAck`): concurrent sends are in flight
    /// together, as many as their callers, instead of one blocked thread each. Only a duplicate's
    /// look-up of the first message goes to a thread of its own.
    func publishAwaitingAck(_ message: OutgoingMessage, subject: String, stream: String, deduplicationID: String) async throws -> SendResult {
        let msg = try makeMessage(message, subject: subject, extraHeaders: [:])
        let ack = try await connection.publishAwaitingAck(msg, messageID: deduplicationID, maxWait: connection.requestTimeoutMilliseconds)
        guard ack.duplicate else { return SendResult(sequence: Int64(ack.sequence), duplicate: false) }
        return try await Blocking.run { [self] in duplicateResult(message, stream: stream, sequence: ack.sequence) }
    }

    /// Publishes and waits (blocking this thread) for the acknowledgement; for the paths that run
    /// on a `Blocking` thread anyway and publish one message among other blocking calls
    /// (dead-lettering, redrive).
    func publish(_ message: OutgoingMessage, subject: String, stream: String, deduplicationID: String, extraHeaders: [String: String] = [:]) throws -> SendResult {
        let msg = try makeMessage(message, subject: subject, extraHeaders: extraHeaders)
        defer { natsMsg_Destroy(msg) }
        let strings = CStrings()
        var options = jsPubOptions()
        jsPubOptions_Init(&options)
        options.MsgId = strings(deduplicationID)
        // No ExpectStream: the Nats-Expected-Stream header it adds stays on the stored message, and a
        // stream that sources a topic then refuses every event (silently; found on 2.9.10).
        var ack: UnsafeMutablePointer<jsPubAck>?
        var code = jsErrCode(0)
        try check(js_PublishMsg(&ack, connection.jetStream, msg, &options, &code), "publish to \(subject)", code)
        defer { jsPubAck_Destroy(ack) }
        let sequence = ack!.pointee.Sequence
        guard ack!.pointee.Duplicate else { return SendResult(sequence: Int64(sequence), duplicate: false) }
        return duplicateResult(message, stream: stream, sequence: sequence)
    }

    // MARK: MessageQueue

    public func send(_ message: OutgoingMessage, to queue: String) async throws -> SendResult {
        let topology = topology(of: queue)
        guard topology.group == nil else { throw NATSError(operation: "send to \(queue)", status: 0, jetStreamCode: 0, text: "a subscriber group's queue is fed by its topic") }
        // The stream is created once per process (a request to the server: on a thread of its own).
        if !state.withLock({ $0.streams.contains(topology.stream) }) { _ = try await Blocking.run { [self] in try ensureQueue(queue) } }
        return try await publishAwaitingAck(message, subject: topology.subject(key: message.key), stream: topology.stream, deduplicationID: message.id)
    }

    public func receive(from queue: String, consumer: String, maxMessages: Int, lease: Duration) async throws -> [ReceivedMessage] {
        guard maxMessages > 0 else { return [] }
        return try await Blocking.run { [self] in
            let topology = try ensureQueue(queue)
            let sub = try subscription(topology, lease: lease)
            var list = natsMsgList()
            var request = jsFetchRequest()
            jsFetchRequest_Init(&request)
            request.Batch = Int32(min(maxMessages, 256))
            request.NoWait = true
            let status = sub.lock.withLock { natsSubscription_FetchRequest(&list, sub.pointer, &request) }
            if status == NATS_TIMEOUT || status == NATS_NOT_FOUND { return [] }
            try check(status, "fetch from \(topology.stream)")
            var fetched: [NATSMessage] = []
            for index in 0..<Int(list.Count) {
                if let msg = list.Msgs[index] { fetched.append(NATSMessage(msg, consumed: true)) }
            }
            natsMsgList_Destroy(&list)
            var received: [ReceivedMessage] = []
            for raw in fetched {
                do {
                    if let message = try admit(raw, queue: queue, topology: topology) { received.append(message) }
                } catch {
                    // Not settled: it comes back after AckWait.
                    logger.warning("could not check a fetched message", metadata: ["queue": "\(queue)", "error": "\(error)"])
                }
            }
            return received
        }
    }

    /// Applies the rules JetStream does not: the delivery limit (counted deliveries, without
    /// postponements) and per-key order. Returns the message if the consumer may have it.
    ///
    /// A fetched copy of a message that is no longer in its stream was settled already: queues are
    /// work-queue streams, which drop a message when it is acknowledged. Such a copy reaches a
    /// fetch late: a fetch does not wait for the server's answer (a no-wait request without an
    /// expiry), so the answer waits in the subscription for the next fetch, and a message whose
    /// lease ran out while the consumer still worked on its previous copy is redelivered there.
    /// It is dropped here so that an acknowledged message never comes back.
    private func admit(_ raw: NATSMessage, queue: String, topology: QueueTopology) throws -> ReceivedMessage? {
        let postponed = try raw.numDelivered > 1 ? postponements(stream: topology.stream, sequence: raw.sequence) : 0
        let key = raw.headers["Fabrikam-Key"].map(unescapeHeaderValue) ?? ""
        let enqueueTime = raw.headers["Fabrikam-Time"].flatMap(Double.init) ?? Double(raw.timestamp) / 1e9
        var message = ReceivedMessage(queue: queue, sequence: Int64(raw.sequence),
                                      id: (raw.headers["Fabrikam-Msg-Id"] ?? raw.headers["Nats-Msg-Id"]).map(unescapeHeaderValue) ?? String(raw.sequence),
                                      key: key, headers: Self.applicationHeaders(raw.headers), payload: raw.payload,
                                      deliveryCount: max(1, Int(raw.numDelivered) - postponed), enqueueTime: enqueueTime,
                                      maxDeliveries: configuration.maxDeliveries, receipt: raw.reply)
        let maxDeliveries = configuration.maxDeliveries
        if maxDeliveries > 0 && message.deliveryCount > maxDeliveries {
            message.deliveryCount -= 1
            try moveToDeadLetters(message, reason: "not acknowledged after \(maxDeliveries) deliveries (consumer crashed or timed out each time)")
            return nil
        }
        // The first message still in the stream at or after this one, among its key's when it has one.
        var first = try directGet(stream: topology.stream, sequence: key.isEmpty ? raw.sequence : 1,
                                  nextBySubject: topology.subject(key: key))
        if let earlier = first, earlier.sequence < raw.sequence {
            first = try removingAcknowledged(from: earlier, before: raw.sequence, subject: topology.subject(key: key), stream: topology.stream, queue: queue)
        }
        guard let first, first.sequence <= raw.sequence else {
            logger.debug("dropped a late copy of a settled message", metadata: ["queue": "\(queue)", "sequence": "\(raw.sequence)"])
            return nil
        }
        if first.sequence < raw.sequence {
            // An earlier message of this key is not settled yet: not now, and not counted.
            let count = try recordPostponement(stream: topology.stream, sequence: raw.sequence)
            let delay = Duration.milliseconds(min(2000, 50 << min(count - 1, 6)))
            try connection.request(raw.reply, "-NAK {\"delay\":\(nanoseconds(delay))}")
            return nil
        }
        return message
    }

    /// The first message on `subject` (one key's) from `earlier` on that the queue's consumer has
    /// not acknowledged, removing the acknowledged ones before `sequence` on the way.
    ///
    /// A message at or below the consumer's acknowledgement floor was acknowledged, yet it can
    /// still be in its work-queue stream: nats-server 2.9.10 writes a consumer's state to disk
    /// sooner than a stream's removals, so a crash (SIGKILL) of the server soon after a run of
    /// acknowledgements brings acknowledged messages back into the stream while the consumer
    /// restarts past them, and it never hands them out again (JetStreamCrashTests: 200 events
    /// acknowledged, the consumer's state written, SIGKILL, restart: the stream held all 200
    /// again, the consumer's floor past them).
    /// Left there, such a message would stand before every later message of its key for ever
    /// (per-key order, above), so the key's later messages would never be delivered. Its removal
    /// is finished here instead: the consumer acknowledged it, so it is done.
    func removingAcknowledged(from earlier: NATSMessage, before sequence: UInt64, subject: String, stream: String, queue: String) throws -> NATSMessage? {
        let floor = try acknowledgementFloor(stream: stream)
        var candidate: NATSMessage? = earlier
        while let message = candidate, message.sequence < sequence, message.sequence <= floor {
            var code = jsErrCode(0)
            let deleted = js_DeleteMsg(connection.jetStream, stream, message.sequence, nil, &code)
            // No such message (JetStream error 10057): its acknowledgement removed it after the
            // look-up (the usual case: the floor passed it meanwhile), or another replica did.
            if deleted == NATS_OK {
                logger.notice("removed a message the consumer had acknowledged but the stream still held (its removal was lost in a server crash)",
                              metadata: ["queue": "\(queue)", "sequence": "\(message.sequence)", "floor": "\(floor)"])
            } else if deleted != NATS_NOT_FOUND && code.rawValue != 10057 {
                try check(deleted, "remove acknowledged message \(message.sequence) from \(stream)", code)
            }
            candidate = try directGet(stream: stream, sequence: message.sequence + 1, nextBySubject: subject)
        }
        return candidate
    }

    /// The stream sequence at or below which the queue's consumer has acknowledged every message.
    func acknowledgementFloor(stream: String) throws -> UInt64 {
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        var code = jsErrCode(0)
        try check(js_GetConsumerInfo(&info, connection.jetStream, stream, Self.consumerName, nil, &code), "consumer info \(stream)", code)
        defer { jsConsumerInfo_Destroy(info) }
        return info!.pointee.AckFloor.Stream
    }

    public func acknowledge(_ message: ReceivedMessage) async throws {
        try await Blocking.run { [self] in try connection.request(message.receipt, "+ACK") }
    }

    public func release(_ message: ReceivedMessage, after delay: Duration) async throws {
        try await Blocking.run { [self] in try connection.request(message.receipt, "-NAK {\"delay\":\(nanoseconds(max(delay, .zero)))}") }
    }

    public func postpone(_ message: ReceivedMessage, after delay: Duration) async throws {
        try await Blocking.run { [self] in
            _ = try recordPostponement(stream: topology(of: message.queue).stream, sequence: UInt64(message.sequence))
            try connection.request(message.receipt, "-NAK {\"delay\":\(nanoseconds(max(delay, .zero)))}")
        }
    }

    public func extendLease(_ message: ReceivedMessage, by lease: Duration) async throws {
        try await Blocking.run { [self] in try connection.request(message.receipt, "+WPI") }
    }

    public func deadLetter(_ message: ReceivedMessage, reason: String) async throws {
        try await Blocking.run { [self] in try moveToDeadLetters(message, reason: reason) }
    }

    /// Publishes the dead letter, then acknowledges the original (a crash in between leaves the
    /// original to come back; its dead letter is then de-duplicated within the window).
    private func moveToDeadLetters(_ message: ReceivedMessage, reason: String) throws {
        let topology = topology(of: message.queue)
        _ = try publish(OutgoingMessage(id: message.id, key: message.key, headers: message.headers, payload: message.payload),
                        subject: dlqSubject(queue: message.queue, key: message.key), stream: dlqStream,
                        deduplicationID: "\(topology.stream):\(message.sequence)",
                        extraHeaders: ["Fabrikam-Queue": message.queue, "Fabrikam-Reason": reason,
                                       "Fabrikam-Deliveries": String(message.deliveryCount)])
        try connection.request(message.receipt, "+ACK")
    }

    public func deadLetters(of queue: String, key: String?, after sequence: Int64, limit: Int) async throws -> [DeadLetter] {
        try await Blocking.run { [self] in
            let subject = dlqSubject(queue: queue, key: key)
            var letters: [DeadLetter] = []
            var next = UInt64(max(0, sequence)) + 1
            while letters.count < limit, let raw = try directGet(stream: dlqStream, sequence: next, nextBySubject: subject) {
                letters.append(deadLetter(raw))
                next = raw.sequence + 1
            }
            return letters
        }
    }

    private func deadLetter(_ raw: NATSMessage) -> DeadLetter {
        let header = { (name: String) in raw.headers[name].map(unescapeHeaderValue) ?? "" }
        return DeadLetter(sequence: Int64(raw.sequence), queue: header("Fabrikam-Queue"), id: header("Fabrikam-Msg-Id"), key: header("Fabrikam-Key"),
                          headers: Self.applicationHeaders(raw.headers), payload: raw.payload, reason: header("Fabrikam-Reason"),
                          deliveryCount: Int(header("Fabrikam-Deliveries")) ?? 0, time: Double(header("Fabrikam-Time")) ?? 0)
    }

    public func redrive(_ queue: String, sequences: [Int64]?) async throws -> [String] {
        var numbers = sequences?.sorted() ?? []
        if sequences == nil { numbers = try await deadLetters(of: queue).map(\.sequence) }
        let chosen = numbers
        return try await Blocking.run { [self] in
            let topology = try ensureQueue(queue)
            guard topology.group == nil else {
                throw NATSError(operation: "redrive \(queue)", status: 0, jetStreamCode: 0, text: "redriving a subscriber group's dead letters is not supported on JetStream")
            }
            var ids: [String] = []
            for number in chosen {
                guard number > 0, let raw = try directGet(stream: dlqStream, sequence: UInt64(number)),
                      raw.headers["Fabrikam-Queue"].map(unescapeHeaderValue) == queue else { continue }
                let letter = deadLetter(raw)
                // A fresh de-duplication id (the original one may still be in the window), the same message id.
                _ = try publish(OutgoingMessage(id: letter.id, key: letter.key, headers: letter.headers, payload: letter.payload),
                                subject: topology.subject(key: letter.key), stream: topology.stream, deduplicationID: "\(letter.id)#redrive-\(number)")
                var code = jsErrCode(0)
                let deleted = js_DeleteMsg(connection.jetStream, dlqStream, UInt64(number), nil, &code)
                if deleted != NATS_OK && deleted != NATS_NOT_FOUND { try check(deleted, "delete dead letter \(number)", code) }
                ids.append(letter.id)
            }
            return ids
        }
    }

    public func depth(of queue: String) async throws -> Int {
        try await Blocking.run { [self] in
            let topology = try ensureQueue(queue)
            var info: UnsafeMutablePointer<jsStreamInfo>?
            var code = jsErrCode(0)
            try check(js_GetStreamInfo(&info, connection.jetStream, topology.stream, nil, &code), "stream info \(topology.stream)", code)
            defer { jsStreamInfo_Destroy(info) }
            return Int(info!.pointee.State.Msgs)
        }
    }

    public func messages(in queue: String, key: String) async throws -> [QueuedMessage] {
        try await Blocking.run { [self] in
            let topology = try ensureQueue(queue)
            // Handed out at least once: at or before the consumer's delivered stream position.
            var delivered: UInt64 = 0
            var info: UnsafeMutablePointer<jsConsumerInfo>?
            var code = jsErrCode(0)
            if js_GetConsumerInfo(&info, connection.jetStream, topology.stream, Self.consumerName, nil, &code) == NATS_OK {
                delivered = info!.pointee.Delivered.Stream
                jsConsumerInfo_Destroy(info)
            }
            var found: [QueuedMessage] = []
            var next: UInt64 = 1
            while let raw = try directGet(stream: topology.stream, sequence: next, nextBySubject: topology.subject(key: key)) {
                found.append(QueuedMessage(id: raw.headers["Fabrikam-Msg-Id"].map(unescapeHeaderValue) ?? String(raw.sequence), key: key, payload: raw.payload,
                                           deliveryCount: nil, enqueueTime: raw.headers["Fabrikam-Time"].flatMap(Double.init) ?? 0,
                                           isLeased: raw.sequence <= delivered))
                next = raw.sequence + 1
            }
            return found
        }
    }

    // MARK: EventStream

    public func publish(_ event: OutgoingMessage, to topic: String) async throws -> SendResult {
        let stream = topicStream(topic)
        if !state.withLock({ $0.streams.contains(stream) }) { try await Blocking.run { [self] in try ensureTopic(topic) } }
        return try await publishAwaitingAck(event, subject: "\(ns).t.\(Self.token(topic)).\(Self.token(event.key))", stream: stream, deduplicationID: event.id)
    }

    public func subscribe(to topic: String, group: String) async throws -> String {
        let queue = "\(topic)#\(group)"
        _ = try await Blocking.run { [self] in try ensureQueue(queue) }
        return queue
    }
}

extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
