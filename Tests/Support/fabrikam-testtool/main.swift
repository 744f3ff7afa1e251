// fabrikam-testtool: what the service tests run as separate OS processes, so that races between
// processes on one SQLite file are real (two processes, two connections, SQLite's file locks).
//
//   fabrikam-testtool consume BROKER QUEUE CONSUMER GO_FILE
//       once GO_FILE exists, takes messages from QUEUE one to three at a time and acknowledges
//       each; prints the id of every message it received (a lease of 60 s: none should come
//       twice); exits when the queue is empty.
//   fabrikam-testtool assign DRONE_DB PREFIX COUNT GO_FILE
//       once GO_FILE exists, asks Drone Scheduler's store for a drone for deliveries PREFIX-0 ..
//       PREFIX-(COUNT-1), waiting in line when none is free; prints "DELIVERY DRONE" or
//       "DELIVERY waiting".
import DroneDeliveryAPI
import DroneScheduler
import Foundation
import Messaging
import ServiceKit

func waitForGo(_ path: String) async throws {
    while !FileManager.default.fileExists(atPath: path) { try await Task.sleep(for: .milliseconds(1)) }
}

func emit(_ line: String) {
    print(line)
    fflush(nil)
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch (arguments.first, arguments.count) {
case ("consume", 5):
    let broker = try SQLiteBroker(path: arguments[1])
    try await waitForGo(arguments[4])
    while true {
        let messages = try await broker.receive(from: arguments[2], consumer: arguments[3], maxMessages: Int.random(in: 1...3), lease: .seconds(60))
        if messages.isEmpty {
            if try await broker.depth(of: arguments[2]) == 0 { break }
            continue
        }
        for message in messages {
            emit(message.id)
            try await broker.acknowledge(message)
        }
    }
case ("assign", 5):
    let store = try SQLiteDroneStore(path: arguments[1])
    guard let count = Int(arguments[3]) else { fatalError("COUNT must be a number") }
    try await waitForGo(arguments[4])
    for index in 0..<count {
        var request = DroneSchedulerV1.AssignDroneRequest()
        request.deliveryId = "\(arguments[2])-\(index)"
        request.requestKey = "saga-\(request.deliveryId)"
        request.pickupLocation = CommonV1.Location(latitude: 47.61, longitude: -122.34)
        request.dropoffLocation = CommonV1.Location(latitude: 47.62, longitude: -122.35)
        var package = CommonV1.PackageInfo()
        package.size = .small
        package.weight = 1
        request.packageInfo = package
        request.wait = true
        switch try await store.assign(request, now: .now) {
        case .assigned(let assignment, _): emit("\(request.deliveryId) \(assignment.droneId)")
        case .waiting: emit("\(request.deliveryId) waiting")
        case let other: emit("\(request.deliveryId) \(other)")
        }
    }
default:
    FileHandle.standardError.write(Data("usage: fabrikam-testtool consume BROKER QUEUE CONSUMER GO_FILE | assign DRONE_DB PREFIX COUNT GO_FILE\n".utf8))
    exit(2)
}
