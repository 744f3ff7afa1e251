import DroneDeliveryAPI
import DroneScheduler
import Foundation
import Messaging
import ServiceKit
import Testing
import TestSupport

/// Races between two OS processes on one SQLite file: each process is `fabrikam-testtool`
/// (built with the tests), with its own connection, and SQLite's file locks between them.
/// Both wait for a "go" file, so they start at the same moment.
@Suite("Two processes on one SQLite file")
struct TwoProcessTests {
    static let tool = repositoryRoot.appendingPathComponent(".build/debug/fabrikam-testtool").path

    /// Starts one tool process per argument list at the same moment; returns each one's output lines.
    func race(_ runs: [[String]], in folder: URL) async throws -> [[String]] {
        let go = folder.appendingPathComponent("go").path
        var processes: [(Process, URL)] = []
        for (index, arguments) in runs.enumerated() {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.tool)
            process.arguments = arguments + [go]
            let output = folder.appendingPathComponent("out-\(index).txt")
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: output)
            process.standardError = try FileHandle(forWritingTo: output)
            try process.run()
            processes.append((process, output))
        }
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        var lines: [[String]] = []
        for (process, output) in processes {
            try await waitFor("\(process.arguments?.first ?? "tool") to finish", timeout: .seconds(120)) { !process.isRunning }
            #expect(process.terminationStatus == 0, "\((try? String(contentsOf: output, encoding: .utf8)) ?? "")")
            lines.append(try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map(String.init))
        }
        return lines
    }

    @Test("two consumer processes on one broker file never get the same message, and together get every one")
    func brokerSharedByTwoProcesses() async throws {
        let folder = try makeTemporaryDirectory("two-process-broker")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("broker.sqlite").path
        let producer = try SQLiteBroker(path: path)
        let ids = (0..<600).map { "m\($0)" }
        for id in ids { _ = try await producer.send(OutgoingMessage(id: id, payload: [1]), to: "q") }
        let got = try await race([["consume", path, "q", "a"], ["consume", path, "q", "b"]], in: folder)
        let (a, b) = (got[0], got[1])
        #expect(Set(a).isDisjoint(with: b), "a message received by both: \(Set(a).intersection(b).sorted().prefix(5))")
        #expect(a.count + b.count == ids.count && Set(a + b) == Set(ids), "every message received exactly once (a: \(a.count), b: \(b.count))")
        #expect(try await producer.depth(of: "q") == 0)
    }

    @Test("two processes assigning drones from one Drone Scheduler file never assign a drone twice; the rest wait in line")
    func assignmentRace() async throws {
        let folder = try makeTemporaryDirectory("two-process-drones")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("dronescheduler.sqlite").path
        let store = try SQLiteDroneStore(path: path)
        let fleet = (1...6).map { "drone-\($0)" }
        for id in fleet {
            var drone = DroneSchedulerV1.Drone()
            drone.droneId = id
            drone.status = .available
            drone.capacityKg = 5
            drone.maxPackageSize = .large
            drone.cruiseSpeedMps = 15
            drone.homeLocation = CommonV1.Location(latitude: 47.6, longitude: -122.33)
            _ = try await store.upsert(drone)
        }
        let got = try await race([["assign", path, "a", "20"], ["assign", path, "b", "20"]], in: folder)
        let answers = (got[0] + got[1]).map { $0.split(separator: " ").map(String.init) }
        try #require(answers.count == 40 && answers.allSatisfy { $0.count == 2 }, "\(answers)")
        let drones = answers.map { $0[1] }.filter { $0 != "waiting" }
        #expect(drones.sorted() == fleet.sorted(), "each drone to exactly one delivery: \(drones.sorted())")
        #expect(answers.filter { $0[1] == "waiting" }.count == 34)
        for id in fleet {
            let holders = answers.filter { $0[1] == id }.map { $0[0] }
            let stored = try #require(try await store.drones(status: nil, offset: 0, limit: 100).first { $0.droneId == id })
            #expect(stored.status == .assigned && [stored.currentDeliveryId] == holders)
        }
    }
}
