import DroneDeliveryAPI
import Foundation
import ProtobufKit
import RPC

public typealias Timestamp = Google.Protobuf.Timestamp

extension Google.Protobuf.Timestamp {
    /// Now, to the microsecond.
    public static var now: Self { Self(secondsSince1970: Date().timeIntervalSince1970) }

    public init(secondsSince1970 value: Double) {
        let seconds = value.rounded(.down)
        self.init(seconds: Int64(seconds), nanos: Int32(((value - seconds) * 1e6).rounded()) * 1000)
    }

    public var secondsSince1970: Double { Double(seconds) + Double(nanos) / 1e9 }
}

extension Google.Protobuf.Duration {
    public var totalSeconds: Double { Double(seconds) + Double(nanos) / 1e9 }
}

extension CommonV1.Location {
    public init(latitude: Double, longitude: Double, altitude: Double = 0) {
        self.init()
        self.latitude = latitude
        self.longitude = longitude
        self.altitude = altitude
    }

    /// Great-circle distance in meters (haversine on a spherical Earth).
    public func distance(to other: CommonV1.Location) -> Double {
        let radius = 6_371_000.0
        let lat1 = latitude * .pi / 180, lat2 = other.latitude * .pi / 180
        let dLat = lat2 - lat1, dLon = (other.longitude - longitude) * .pi / 180
        let h = sin(dLat / 2) * sin(dLat / 2) + cos(lat1) * cos(lat2) * sin(dLon / 2) * sin(dLon / 2)
        return 2 * radius * asin(min(1, sqrt(h)))
    }

    /// The point `fraction` (0...1) of the way to `other`, along a straight line in latitude and
    /// longitude (good enough over the few kilometers a delivery drone flies).
    public func interpolated(to other: CommonV1.Location, fraction: Double) -> CommonV1.Location {
        let f = max(0, min(1, fraction))
        return CommonV1.Location(latitude: latitude + (other.latitude - latitude) * f,
                                 longitude: longitude + (other.longitude - longitude) * f,
                                 altitude: altitude + (other.altitude - altitude) * f)
    }
}

/// The few request checks that are not field rules (a rule across two fields, or on a field of
/// a message shared with requests where it may be empty): throws INVALID_ARGUMENT with a
/// google.rpc.BadRequest, as the field rules' checks do (see ValidationViolation).
public struct Validator {
    public private(set) var violations: [ValidationViolation] = []
    public init() {}

    /// When `condition` fails: `field` (a path; "" for the whole request) and what is wrong.
    public mutating func require(_ condition: Bool, _ field: String, _ message: @autoclosure () -> String) {
        if !condition { violations.append(ValidationViolation(field: field, ruleID: "", message: message())) }
    }

    /// The generated field rules of `part`, a message inside the request at `path` (`items[2]`),
    /// for a field the runtime does not check (`ignore = IGNORE_ALWAYS`): its violations are
    /// named from the request, as the runtime would name them.
    public mutating func requireFieldRules(of part: some Message, at path: String) {
        part._collectViolations(at: path, into: &violations)
    }

    public func check() throws {
        if !violations.isEmpty { throw RPCError(fieldRuleViolations: violations, in: "request") }
    }
}

/// Encodes a page token (an offset) and reads it back, naming a bad one.
public enum PageToken {
    public static func encode(offset: Int) -> String { offset == 0 ? "" : "o\(offset)" }
    public static func decode(_ token: String) throws -> Int {
        if token.isEmpty { return 0 }
        guard token.first == "o", let offset = Int(token.dropFirst()), offset >= 0 else {
            throw RPCError(.invalidArgument, "page_token \"\(token)\" is not a token this service issued")
        }
        return offset
    }
    /// A page size within 1...1000 (0 means the default, 100; a negative size is refused by
    /// the field rule `page_size >= 0` of every listing request).
    public static func size(_ requested: Int32) throws -> Int {
        requested <= 0 ? 100 : min(Int(requested), 1000)
    }
}

/// The request queue between Ingestion and Workflow: its name and how its messages are keyed.
public enum RequestQueue {
    public static let name = "delivery-requests"

    /// The message key of an envelope. Messages with one key run one at a time, in order: a
    /// delivery's create, then its reschedules. Cancels have a key of their own, so that a
    /// cancel does not wait behind a create that waits in line for a drone.
    public static func key(_ operation: CommonV1.OperationKind, deliveryID: String) -> String {
        operation == .cancel ? "\(deliveryID)/cancel" : deliveryID
    }
}

/// One page of a listing, from a request's `page_token` and `page_size`: the shared piece of
/// every paged List handler. Ask the store for `size + 1` items from `offset`; `cut` keeps the
/// page and says whether another follows.
public struct Page: Sendable {
    public let offset: Int
    public let size: Int

    public init(token: String, size: Int32) throws {
        self.offset = try PageToken.decode(token)
        self.size = try PageToken.size(size)
    }

    /// How many items to fetch: one more than the page holds, to learn whether another follows.
    public var fetchLimit: Int { size + 1 }

    /// The page's items out of `fetched`, and the token of the next page ("" on the last).
    public func cut<Item>(_ fetched: [Item]) -> (items: [Item], nextPageToken: String) {
        (Array(fetched.prefix(size)), fetched.count > size ? PageToken.encode(offset: offset + size) : "")
    }
}

extension Message {
    /// Decodes stored bytes; a row that does not decode is data loss and says so.
    public init(storedBytes bytes: [UInt8], what: String) throws {
        do { try self.init(serializedBytes: bytes) } catch { throw RPCError(.dataLoss, "stored \(what) does not decode: \(error)") }
    }
}
