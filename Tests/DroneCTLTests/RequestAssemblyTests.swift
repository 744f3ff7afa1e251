import DroneDeliveryAPI
import Foundation
@testable import DroneCTL
import ProtobufKit
import Testing

/// Field flags laid over `-d` documents, decoded with the generated types, and errors told in
/// terms of the flag or the `-d` path.
@Suite("Request assembly")
struct RequestAssemblyTests {
    typealias Request = IngestionV1.CreateDeliveryRequest

    static func flags(weight: String? = nil, size: String? = nil, expedited: Bool? = nil, tag: String? = nil, pickupTime: String? = nil) -> [FieldFlag] {
        [
            FieldFlag("package-info.weight", json: "packageInfo.weight", proto: "package_info.weight", .number, .singular, weight),
            FieldFlag("package-info.size", json: "packageInfo.size", proto: "package_info.size",
                      .enumeration(DroneCTL.enumNames(CommonV1.PackageSize.self)), .singular, size),
            FieldFlag("expedited", json: "expedited", proto: "expedited", .bool, .singular, expedited),
            FieldFlag("package-info.tag", json: "packageInfo.tag", proto: "package_info.tag", .string, .singular, tag),
            FieldFlag("pickup-time", json: "pickupTime", proto: "pickup_time", .timestamp, .singular, pickupTime),
        ]
    }

    static func build(_ flags: [FieldFlag], data: String?) throws -> Request {
        let assembler = try RequestAssembler(flags: flags)
        let document = try data.map { try JSONParser.parse($0) }
        let json = try assembler.assemble(document, source: "-d")
        do {
            return try Request(jsonValue: json)
        } catch let error as JSONDecodingError {
            throw assembler.explain(error, source: "-d")
        }
    }

    @Test("flags set nested fields, enums by short name, switches and timestamps")
    func flagsSetFields() throws {
        let request = try Self.build(Self.flags(weight: "1.5", size: "small", expedited: true, pickupTime: "2026-12-01T10:00:00Z"), data: nil)
        #expect(request.packageInfo?.weight == 1.5)
        #expect(request.packageInfo?.size == .small)
        #expect(request.expedited == true)
        #expect(request.pickupTime?.seconds == 1_796_119_200)
    }

    @Test("flags override fields of -d, whatever name -d used; the rest of -d stays")
    func flagsOverrideData() throws {
        let data = #"{"package_info": {"weight": 9, "tag": "fragile"}, "expedited": true}"#
        let request = try Self.build(Self.flags(weight: "2", expedited: false), data: data)
        #expect(request.packageInfo?.weight == 2)
        #expect(request.packageInfo?.tag == "fragile")
        #expect(request.expedited == false)
    }

    @Test("a wrong value is reported under its flag; a wrong -d member under its path")
    func errorsNameTheFlagOrPath() throws {
        #expect(throws: UsageError("--package-info.weight: expected a number, got \"heavy\"")) {
            try Self.build(Self.flags(weight: "heavy"), data: nil)
        }
        #expect(throws: UsageError("-d: packageInfo.weight: expected a number, got \"heavy\"")) {
            try Self.build(Self.flags(), data: #"{"packageInfo": {"weight": "heavy"}}"#)
        }
        #expect(throws: UsageError("--package-info.size: expected one of PACKAGE_SIZE_UNSPECIFIED, PACKAGE_SIZE_SMALL, PACKAGE_SIZE_MEDIUM, PACKAGE_SIZE_LARGE, got \"huge\"")) {
            try Self.build(Self.flags(size: "huge"), data: nil)
        }
        #expect(throws: UsageError("--pickup-time: \"yesterday\" is not an RFC 3339 timestamp between 0001-01-01 and 9999-12-31")) {
            try Self.build(Self.flags(pickupTime: "yesterday"), data: nil)
        }
        #expect(throws: UsageError.self) { try Self.build(Self.flags(), data: #"["not", "an", "object"]"#) }
    }

    @Test("oneof: a flag replaces the other member given in -d; two member flags are refused")
    func oneofMembers() throws {
        // grpc.reflection's request: a oneof of what to ask.
        func flags(_ byName: String?, _ bySymbol: String?) -> [FieldFlag] {
            [FieldFlag("file-by-filename", json: "fileByFilename", proto: "file_by_filename", .string, .singular, oneof: "messageRequest", byName),
             FieldFlag("file-containing-symbol", json: "fileContainingSymbol", proto: "file_containing_symbol", .string, .singular, oneof: "messageRequest", bySymbol)]
        }
        let assembler = try RequestAssembler(flags: flags(nil, "pkg.Svc"))
        let json = try assembler.assemble(try JSONParser.parse(#"{"file_by_filename": "a.proto", "host": "h"}"#), source: "-d")
        #expect(json == .object([JSONMember("host", .string("h")), JSONMember("fileContainingSymbol", .string("pkg.Svc"))]))
        #expect(throws: UsageError("--file-by-filename and --file-containing-symbol set different members of oneof messageRequest; give one")) {
            try RequestAssembler(flags: flags("a.proto", "pkg.Svc"))
        }
    }

    @Test("repeated flags, maps as key=value, bytes from @file, JSON values")
    func repeatedMapsBytesJSON() throws {
        let file = "/tmp/dronectl-bytes-\(UInt32.random(in: 0...UInt32.max))"
        #expect(FileManagerLite.write(file, [0, 1, 2, 255]))
        defer { FileManagerLite.remove(file) }
        let flags = [
            FieldFlag("tags", json: "tags", proto: "tags", .string, .repeated, ["a", "b"]),
            FieldFlag("labels", json: "labels", proto: "labels", .string, .map(key: .string, value: .integer), ["x=1", "y=-2", "x=3"]),
            FieldFlag("blob", json: "blob", proto: "blob", .bytes, .singular, "@" + file),
            FieldFlag("extra", json: "extra", proto: "extra", .json, .singular, #"{"k": [1, true]}"#),
        ]
        let json = try RequestAssembler(flags: flags).assemble(nil, source: "-d")
        #expect(json == .object([
            JSONMember("tags", .array([.string("a"), .string("b")])),
            JSONMember("labels", .object([JSONMember("y", .integer(-2)), JSONMember("x", .integer(3))])),
            JSONMember("blob", .string("AAEC/w==")),
            JSONMember("extra", .object([JSONMember("k", .array([.integer(1), .bool(true)]))])),
        ]))
        #expect(throws: UsageError("--labels: expected key=value, got \"novalue\"")) {
            try RequestAssembler(flags: [FieldFlag("labels", json: "labels", proto: "labels", .string, .map(key: .string, value: .string), ["novalue"])])
                .assemble(nil, source: "-d")
        }
        #expect(throws: UsageError.self) {
            try RequestAssembler(flags: [FieldFlag("blob", json: "blob", proto: "blob", .bytes, .singular, "@/nonexistent/file")]).assemble(nil, source: "-d")
        }
    }

    @Test("enum names: full, without the prefix in any case, or a number")
    func enumNames() throws {
        let names = DroneCTL.enumNames(CommonV1.DeliveryStage.self)
        #expect(try FieldFlag.convert("DELIVERY_STAGE_COMPLETED", .enumeration(names), flag: "s", files: FileReader()) == .string("DELIVERY_STAGE_COMPLETED"))
        #expect(try FieldFlag.convert("completed", .enumeration(names), flag: "s", files: FileReader()) == .string("DELIVERY_STAGE_COMPLETED"))
        #expect(try FieldFlag.convert("headed-to-pickup", .enumeration(names), flag: "s", files: FileReader()) == .string("DELIVERY_STAGE_HEADED_TO_PICKUP"))
        #expect(try FieldFlag.convert("3", .enumeration(names), flag: "s", files: FileReader()) == .integer(3))
    }
}

extension UsageError: Equatable {
    public static func == (lhs: UsageError, rhs: UsageError) -> Bool { lhs.description == rhs.description }
}

/// Small file helpers without Foundation's FileManager in the assertions' way.
enum FileManagerLite {
    static func write(_ path: String, _ bytes: [UInt8]) -> Bool {
        guard let file = fopen(path, "wb") else { return false }
        defer { fclose(file) }
        return fwrite(bytes, 1, bytes.count, file) == bytes.count
    }
    static func remove(_ path: String) { unlink(path) }
}
