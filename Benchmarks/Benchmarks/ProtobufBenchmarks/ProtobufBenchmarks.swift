// ProtobufKit (protobuf-c underneath) against swift-protobuf 1.39 on the same messages, and the
// JSON parsers (jansson against Foundation) on the same text. Run: make bench-protobuf.
//
// The messages are the system's own: a delivery request as Ingestion enqueues it, a tracking
// update as Delivery streams it, and a page of 500 history events as Delivery History returns it.
// The swift-protobuf values are decoded from our bytes, so both sides hold the same content.

import Benchmark
import DroneDeliveryAPI
import Foundation
import JanssonParser
import ProtobufKit
import SwiftProtobuf
import SwiftProtobufMessages

// MARK: - Sample messages

func timestamp(_ seconds: Int64) -> Google.Protobuf.Timestamp { Google.Protobuf.Timestamp(seconds: seconds, nanos: 250_000_000) }

func location(_ index: Int) -> CommonV1.Location {
    var location = CommonV1.Location()
    location.latitude = 47.6062 + Double(index) * 0.0001
    location.longitude = -122.3321 - Double(index) * 0.0001
    location.altitude = 120.5
    return location
}

func owner() -> CommonV1.Owner {
    var owner = CommonV1.Owner()
    owner.userId = "user-8f14e45f"
    owner.accountId = "account-c9f0f895"
    return owner
}

func deliveryRequest() -> IngestionV1.RequestEnvelope {
    var request = IngestionV1.DeliveryRequest()
    request.deliveryId = "d-2f8c1e6a-4b7d-4c1e-9a3b-5d6e7f8a9b0c"
    request.owner = owner()
    request.pickupLocation = location(1)
    request.dropoffLocation = location(2)
    request.pickupTime = timestamp(1_790_000_000)
    request.deadline = timestamp(1_790_003_600)
    request.expedited = true
    request.confirmationRequired = .fingerprint
    var package = CommonV1.PackageInfo()
    package.packageId = "p-77a1"
    package.size = .medium
    package.weight = 2.75
    package.tag = "fragile"
    request.packageInfo = package
    var envelope = IngestionV1.RequestEnvelope()
    envelope.messageId = "m-0001"
    envelope.operation = .create
    envelope.deliveryId = request.deliveryId
    envelope.requestedBy = owner()
    envelope.acceptTime = timestamp(1_789_999_990)
    var trace = CommonV1.TraceContext()
    trace.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    trace.correlationId = "c-123"
    envelope.traceContext = trace
    envelope.schemaVersion = 1
    envelope.payload = .create(request)
    return envelope
}

func trackingEvent() -> DeliveryV1.DeliveryTrackingEvent {
    var event = DeliveryV1.DeliveryTrackingEvent()
    event.deliveryId = "d-2f8c1e6a-4b7d-4c1e-9a3b-5d6e7f8a9b0c"
    event.stage = .headedToDropoff
    event.location = location(3)
    event.time = timestamp(1_790_000_600)
    event.pickupEta = timestamp(1_790_000_300)
    event.deliveryEta = timestamp(1_790_001_800)
    event.sequence = 42
    event.droneId = "drone-017"
    return event
}

func historyPage() -> DeliveryHistoryV1.ListOwnerHistoryResponse {
    var page = DeliveryHistoryV1.ListOwnerHistoryResponse()
    page.events = (0..<500).map { index in
        var event = DeliveryHistoryV1.DeliveryHistoryEvent()
        event.eventId = "e-\(index)"
        event.deliveryId = "d-\(index / 5)"
        event.owner = owner()
        event.stage = CommonV1.DeliveryStage(rawValue: Int32(index % 6 + 1))
        event.eventTime = timestamp(1_790_000_000 + Int64(index))
        event.location = location(index)
        event.droneId = "drone-\(index % 40)"
        event.sequence = Int64(index)
        event.recordTime = timestamp(1_790_000_001 + Int64(index))
        event.correlationId = "c-\(index)"
        return event
    }
    page.nextPageToken = "token-500"
    return page
}

// MARK: - Benchmarks

/// One message in both libraries, with its encodings prepared.
struct Sample<Ours: ProtobufKit.Message, Theirs: SwiftProtobuf.Message & SwiftProtobuf._ProtoNameProviding> {
    let name: String
    let ours: Ours
    let theirs: Theirs
    let bytes: [UInt8]
    let json: String

    init(_ name: String, _ ours: Ours, as type: Theirs.Type) {
        self.name = name
        self.ours = ours
        self.bytes = try! ours.serializedBytes()
        self.theirs = try! Theirs(serializedBytes: bytes)
        self.json = try! ours.jsonString()
        // Both sides must agree before they are timed.
        precondition(try! self.theirs.serializedBytes() as [UInt8] == bytes, "\(name): swift-protobuf re-encodes differently")
        precondition(try! Ours(jsonString: try! self.theirs.jsonString()) == ours, "\(name): JSON differs")
    }
}

func register<O, T>(_ sample: Sample<O, T>) {
    let bytes = sample.bytes
    let data = Data(bytes)
    let json = sample.json
    let jsonBytes = Array(json.utf8)
    let jsonData = Data(json.utf8)

    Benchmark("\(sample.name) encode: ProtobufKit") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try sample.ours.serializedBytes()) }
    }
    Benchmark("\(sample.name) encode: swift-protobuf") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try sample.theirs.serializedBytes() as [UInt8]) }
    }
    Benchmark("\(sample.name) decode: ProtobufKit") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try O(serializedBytes: bytes)) }
    }
    Benchmark("\(sample.name) decode: swift-protobuf") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try T(serializedBytes: data)) }
    }
    Benchmark("\(sample.name) to JSON: ProtobufKit") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try sample.ours.jsonUTF8Bytes()) }
    }
    Benchmark("\(sample.name) to JSON: swift-protobuf") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try sample.theirs.jsonUTF8Bytes() as [UInt8]) }
    }
    Benchmark("\(sample.name) from JSON: ProtobufKit") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try O(jsonUTF8Bytes: jsonBytes)) }
    }
    Benchmark("\(sample.name) from JSON: swift-protobuf") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try T(jsonUTF8Data: jsonData)) }
    }
}

/// Converts Foundation's parse result into the same tree the JSON mapping consumes, so the two
/// parsers are compared doing the same job.
func jsonValue(fromFoundation object: Any) -> JSONValue {
    switch object {
    case is NSNull: return .null
    case let string as String: return .string(string)
    case let number as NSNumber:
        // Foundation boxes true and false as NSNumber of type char.
        let kind = String(cString: number.objCType)
        if kind == "c" || kind == "B" { return .bool(number.boolValue) }
        let double = number.doubleValue
        if double == double.rounded(), abs(double) < 9e15 { return .integer(number.int64Value) }
        return .number(double)
    case let array as [Any]: return .array(array.map(jsonValue(fromFoundation:)))
    case let dictionary as [String: Any]: return .object(dictionary.map { JSONMember($0.key, jsonValue(fromFoundation: $0.value)) })
    default: return .null
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 100,
        maxDuration: .seconds(2),
        maxIterations: 1_000_000
    )

    register(Sample("delivery request", deliveryRequest(), as: Fabrikam_Dronedelivery_Ingestion_V1_RequestEnvelope.self))
    register(Sample("tracking update", trackingEvent(), as: Fabrikam_Dronedelivery_Delivery_V1_DeliveryTrackingEvent.self))
    register(Sample("history page (500 events)", historyPage(), as: Fabrikam_Dronedelivery_Deliveryhistory_V1_ListOwnerHistoryResponse.self))

    // The JSON parser choice (docs/json-parser.md): the same text parsed into the same tree by
    // the project's scanner, jansson and Foundation.
    for (name, text) in [("delivery request", try! deliveryRequest().jsonString()), ("history page", try! historyPage().jsonString())] {
        let bytes = Array(text.utf8)
        let data = Data(bytes)
        Benchmark("JSON parse \(name): JSONScanner") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try JSONParser.parse(bytes)) }
        }
        Benchmark("JSON parse \(name): jansson") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try JanssonParser.parse(bytes)) }
        }
        Benchmark("JSON parse \(name): Foundation") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(jsonValue(fromFoundation: try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])))
            }
        }
    }
}
