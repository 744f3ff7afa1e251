import DroneDeliveryAPI
import Logging
import Messaging
import ProtobufKit
import RPC
import ServiceKit

/// Ingestion: accepts delivery requests, reschedules and cancellations, and answers only after
/// the request is durably on the request queue (a 202 that cannot be lost). It keeps nothing of
/// its own: the queue's de-duplication on the message id makes a repeated request (same
/// `request_id`) return the first answer without queueing anything twice.
public struct IngestionServiceLogic: IngestionV1.IngestionService.Handler {
    /// The queue Workflow consumes.
    public static let requestQueue = RequestQueue.name
    let queue: any MessageQueue

    public init(queue: any MessageQueue) { self.queue = queue }

    public func createDelivery(_ request: IngestionV1.CreateDeliveryRequest, context: ServerContext) async throws -> IngestionV1.CreateDeliveryResponse {
        // Field rules (ingestion.proto, common.proto) checked the rest: owner, both locations
        // on Earth, package_info with a defined size and a positive weight, request_id of at
        // most 128 bytes. Two rules stay here: the owner's account id (Owner is shared with
        // requests where it may be empty) and the deadline after pickup_time (two fields).
        var check = Validator()
        check.require(!(request.owner?.accountId ?? "").isEmpty, "owner.account_id", "value is required")
        if let pickup = request.pickupTime, let deadline = request.deadline {
            check.require(deadline.secondsSince1970 > pickup.secondsSince1970, "deadline", "must be after pickup_time")
        }
        try check.check()
        let accountID = request.owner!.accountId
        try checkRequester(context, owns: accountID)

        var payload = IngestionV1.DeliveryRequest()
        payload.deliveryId = request.requestId.isEmpty ? makeID("dlv") : Self.deliveryID(account: accountID, requestID: request.requestId)
        payload.owner = request.owner
        payload.pickupLocation = request.pickupLocation
        payload.dropoffLocation = request.dropoffLocation
        payload.pickupTime = request.pickupTime
        payload.deadline = request.deadline
        payload.expedited = request.expedited
        payload.confirmationRequired = request.confirmationRequired
        payload.packageInfo = request.packageInfo
        if payload.packageInfo!.packageId.isEmpty { payload.packageInfo!.packageId = "pkg-" + payload.deliveryId.dropFirst(4) }
        // A caller's request id de-duplicates per account: the same id is the same delivery.
        let messageID = request.requestId.isEmpty ? makeID("msg") : "create:\(accountID):\(request.requestId)"
        let accepted = try await enqueue(.create, deliveryID: payload.deliveryId, messageID: messageID, owner: request.owner, payload: .create(payload))
        // The same request id with another request is a client's mistake, not a retry: refuse it
        // rather than answer with the first delivery.
        if case .create(let first)? = accepted.first?.payload, !Self.sameRequest(first, payload) {
            throw RPCError(.alreadyExists, "request_id \(request.requestId) was already used for a different delivery request")
        }
        var response = IngestionV1.CreateDeliveryResponse()
        response.deliveryId = accepted.deliveryId
        response.statusPath = Self.statusPath(accepted.deliveryId)
        response.acceptTime = accepted.acceptTime
        return response
    }

    public func rescheduleDelivery(_ request: IngestionV1.RescheduleDeliveryRequest, context: ServerContext) async throws -> IngestionV1.RescheduleDeliveryResponse {
        // delivery_id and the locations given are checked by field rules; that a reschedule
        // changes something (at least one of five fields) is not a field rule.
        var check = Validator()
        check.require(request.pickupLocation != nil || request.dropoffLocation != nil || request.pickupTime != nil || request.deadline != nil || request.expedited != nil,
                      "", "a reschedule must change at least one of pickup_location, dropoff_location, pickup_time, deadline, expedited")
        try check.check()
        var payload = IngestionV1.RescheduleRequest()
        payload.deliveryId = request.deliveryId
        payload.pickupLocation = request.pickupLocation
        payload.dropoffLocation = request.dropoffLocation
        payload.pickupTime = request.pickupTime
        payload.deadline = request.deadline
        payload.expedited = request.expedited
        let messageID = request.requestId.isEmpty ? makeID("msg") : "reschedule:\(request.deliveryId):\(request.requestId)"
        let accepted = try await enqueue(.reschedule, deliveryID: request.deliveryId, messageID: messageID, owner: requester(context), payload: .reschedule(payload))
        var response = IngestionV1.RescheduleDeliveryResponse()
        response.deliveryId = accepted.deliveryId
        response.statusPath = Self.statusPath(accepted.deliveryId)
        response.acceptTime = accepted.acceptTime
        return response
    }

    public func cancelDelivery(_ request: IngestionV1.CancelDeliveryRequest, context: ServerContext) async throws -> IngestionV1.CancelDeliveryResponse {
        var payload = IngestionV1.CancelRequest()
        payload.deliveryId = request.deliveryId
        payload.reason = request.reason
        // Each cancel is an attempt of its own (one that failed can be tried again); a repeated
        // request id is the same attempt. Its own key: a cancel must not wait behind the
        // delivery's create, which may be waiting in line for a drone.
        let messageID = request.requestId.isEmpty ? makeID("msg") : "cancel:\(request.deliveryId):\(request.requestId)"
        let accepted = try await enqueue(.cancel, deliveryID: request.deliveryId, messageID: messageID, owner: requester(context), payload: .cancel(payload))
        var response = IngestionV1.CancelDeliveryResponse()
        response.deliveryId = accepted.deliveryId
        response.statusPath = Self.statusPath(accepted.deliveryId)
        response.acceptTime = accepted.acceptTime
        return response
    }

    public func getQueuedDelivery(_ request: IngestionV1.GetQueuedDeliveryRequest, context: ServerContext) async throws -> IngestionV1.QueuedDelivery {
        let notFound = RPCError(.notFound, "no queued request for delivery \(request.deliveryId)")
        // Only a create makes a delivery that Delivery does not know yet; the envelopes of
        // reschedules and cancels share its key and are passed over. An envelope that does not
        // parse names no owner, so it is not shown to anyone.
        func create(_ payload: [UInt8]) -> IngestionV1.RequestEnvelope? {
            guard let envelope = try? IngestionV1.RequestEnvelope(storedBytes: payload, what: "queued request"), envelope.operation == .create else { return nil }
            return envelope
        }
        var answer = IngestionV1.QueuedDelivery()
        answer.deliveryId = request.deliveryId
        var found: IngestionV1.RequestEnvelope?
        if let (message, envelope) = try await queue.messages(in: Self.requestQueue, key: request.deliveryId).lazy
            .compactMap({ message in create(message.payload).map { (message, $0) } }).first {
            found = envelope
            answer.state = message.isLeased ? .inProgress : .waiting
            answer.attempts = Int32(message.deliveryCount ?? 0)
        } else if let (letter, envelope) = try await queue.deadLetters(of: Self.requestQueue, key: request.deliveryId).lazy
            .compactMap({ letter in create(letter.payload).map { (letter, $0) } }).last {
            found = envelope
            answer.state = .deadLettered
            answer.attempts = Int32(letter.deliveryCount)
            answer.deadLetterReason = letter.reason
        }
        // Another business's delivery is "not found", so ids do not leak.
        guard let found, requester(context).map({ $0.accountId == found.requestedBy?.accountId }) ?? true else { throw notFound }
        answer.owner = found.requestedBy
        answer.acceptTime = found.acceptTime
        return answer
    }

    /// Whether a repeated create asks for what the first did (the ids Ingestion made up aside).
    static func sameRequest(_ first: IngestionV1.DeliveryRequest, _ repeated: IngestionV1.DeliveryRequest) -> Bool {
        func normalized(_ request: IngestionV1.DeliveryRequest) -> IngestionV1.DeliveryRequest {
            var request = request
            if request.packageInfo?.packageId == "pkg-" + request.deliveryId.dropFirst(4) { request.packageInfo?.packageId = "" }
            request.deliveryId = ""
            return request
        }
        return normalized(first) == normalized(repeated)
    }

    static let logger = Logger(label: "fabrikam.ingestion")

    /// Puts the envelope on the queue and returns once it is committed. For a duplicate, returns
    /// what the first request was given, and the first envelope.
    func enqueue(_ operation: CommonV1.OperationKind, deliveryID: String, messageID: String, owner: CommonV1.Owner?,
                 payload: IngestionV1.RequestEnvelope.Payload) async throws -> (deliveryId: String, acceptTime: Timestamp?, first: IngestionV1.RequestEnvelope?) {
        // A PRODUCER span when tracing is on: the message carries its context, so Workflow's
        // CONSUMER span is its child.
        try await Tracing.withSpan("send \(Self.requestQueue)", kind: .producer,
                                   attributes: [SpanAttribute("messaging.system", "fabrikam"), SpanAttribute("messaging.operation.type", "send"),
                                                SpanAttribute("messaging.destination.name", Self.requestQueue), SpanAttribute("messaging.message.id", messageID),
                                                SpanAttribute("fabrikam.delivery.id", deliveryID)]) {
            try await send(operation, deliveryID: deliveryID, messageID: messageID, owner: owner, payload: payload)
        }
    }

    private func send(_ operation: CommonV1.OperationKind, deliveryID: String, messageID: String, owner: CommonV1.Owner?,
                      payload: IngestionV1.RequestEnvelope.Payload) async throws -> (deliveryId: String, acceptTime: Timestamp?, first: IngestionV1.RequestEnvelope?) {
        let trace = RequestTrace.current ?? RequestTrace.makeNew()
        var envelope = IngestionV1.RequestEnvelope()
        envelope.messageId = messageID
        envelope.operation = operation
        envelope.deliveryId = deliveryID
        envelope.requestedBy = owner
        envelope.acceptTime = .now
        envelope.traceContext = trace
        envelope.schemaVersion = 1
        envelope.payload = payload
        var headers = RequestTrace.headers(trace)
        headers[MessageHeader.contentType] = "application/x-protobuf; type=\(IngestionV1.RequestEnvelope.protoMessageName)"
        let result: SendResult
        do {
            result = try await queue.send(OutgoingMessage(id: messageID, key: RequestQueue.key(operation, deliveryID: deliveryID), headers: headers, payload: envelope.serializedBytes()),
                                          to: Self.requestQueue)
        } catch {
            // The broker's own words (SQL, file names) go to the log, not to the caller.
            Self.logger.error("a request could not be stored", metadata: ["message_id": "\(messageID)", "error": "\(error)"])
            throw RPCError(.unavailable, "the request could not be stored; nothing was accepted, try again")
        }
        if let original = result.duplicateOf {
            let first = try IngestionV1.RequestEnvelope(storedBytes: original, what: "queued request")
            return (first.deliveryId, first.acceptTime, first)
        }
        if result.duplicate {
            // The engine no longer has the first message (JetStream forgets a settled one; see
            // MessagingGuarantees). The delivery id is still the first one's: a repeated create
            // derives it from the same account and request id, and the other operations name it.
            // What is lost is the first accept time and the check that the repeat asked for the
            // same delivery.
            return (deliveryID, envelope.acceptTime, nil)
        }
        return (deliveryID, envelope.acceptTime, nil)
    }

    /// The delivery id of a create that carries a request id: a function of the account and the
    /// request id, so a repeat gets the first request's id even from an engine that no longer
    /// holds the first message, and two accounts' request ids never meet. The account id goes in
    /// with its length so that no other (account, request id) pair spells the same input.
    static func deliveryID(account: String, requestID: String) -> String {
        "dlv-" + SHA256.hex("\(account.utf8.count):\(account):\(requestID)").prefix(24)
    }

    /// The account the gateway authenticated (`x-account-id`), if the call came through it.
    func requester(_ context: ServerContext) -> CommonV1.Owner? {
        guard let account = context.metadata["x-account-id"], !account.isEmpty else { return nil }
        var owner = CommonV1.Owner()
        owner.accountId = account
        owner.userId = context.metadata["x-user-id"] ?? ""
        return owner
    }

    func checkRequester(_ context: ServerContext, owns accountID: String) throws {
        if let requester = requester(context), requester.accountId != accountID {
            throw RPCError(.permissionDenied, "the caller's account \(requester.accountId) cannot create deliveries for account \(accountID)")
        }
    }

    static func statusPath(_ deliveryID: String) -> String { "/v1/deliveries/\(deliveryID)/status" }

    // MARK: Operators: dead letters

    public func listDeadLetters(_ request: IngestionV1.ListDeadLettersRequest, context: ServerContext) async throws -> IngestionV1.ListDeadLettersResponse {
        try refuseAccounts(context)
        let page = try Page(token: request.pageToken, size: request.pageSize)
        let letters = try await queue.deadLetters(of: Self.requestQueue, key: request.deliveryId.isEmpty ? nil : request.deliveryId,
                                                  after: Int64(page.offset), limit: page.size + 1)
        var response = IngestionV1.ListDeadLettersResponse()
        response.deadLetters = letters.prefix(page.size).map { letter in
            var item = IngestionV1.DeadLetter()
            item.deadLetterId = String(letter.sequence)
            item.messageId = letter.id
            item.deliveryId = letter.key
            item.reason = letter.reason
            item.deliveryCount = Int32(clamping: letter.deliveryCount)
            item.deadLetterTime = Timestamp(secondsSince1970: letter.time)
            item.payload = letter.payload
            if let envelope = try? IngestionV1.RequestEnvelope(serializedBytes: letter.payload) {
                item.operation = envelope.operation
                if !envelope.deliveryId.isEmpty { item.deliveryId = envelope.deliveryId }
            }
            return item
        }
        // Dead letters are paged by their number (new ones only ever come after).
        if letters.count > page.size, let last = letters.prefix(page.size).last { response.nextPageToken = PageToken.encode(offset: Int(last.sequence)) }
        return response
    }

    public func redriveDeadLetters(_ request: IngestionV1.RedriveDeadLettersRequest, context: ServerContext) async throws -> IngestionV1.RedriveDeadLettersResponse {
        try refuseAccounts(context)
        // Exactly one of dead_letter_ids and all, and ids of 1 to 18 digits (field rules).
        let numbers = request.deadLetterIds.map { Int64($0) }
        var response = IngestionV1.RedriveDeadLettersResponse()
        response.messageIds = try await queue.redrive(Self.requestQueue, sequences: request.all ? nil : numbers.compactMap { $0 })
        if !request.all && response.messageIds.count < numbers.count {
            // Some were redriven (no harm: they run again); name what was not found.
            throw RPCError(.notFound, "redrove \(response.messageIds.count) of \(numbers.count) dead letters; the others do not exist (already redriven?)")
        }
        return response
    }

    /// The dead-letter API is for operators: a call on behalf of a business (through the gateway,
    /// which names the account) is refused.
    func refuseAccounts(_ context: ServerContext) throws {
        if let account = context.metadata["x-account-id"], !account.isEmpty {
            throw RPCError(.permissionDenied, "dead letters are an operator API; account \(account) cannot use it")
        }
    }
}
