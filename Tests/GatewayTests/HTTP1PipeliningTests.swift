import Foundation
import Gateway
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// HTTP/1.1 pipelining against the real gateway listener: the gateway orders pipelined answers
/// itself (HTTPRequestHandler), so this checks that the answers come back complete and in the
/// order the requests were sent, including past the point where it stops reading for a while.
/// Every upstream points at port 1, where nothing listens: a route that needs one answers 503
/// only after a failed connection attempt, so those answers finish later than the others and
/// any reordering would show.
@Suite("Gateway HTTP/1.1: pipelined requests are answered in order")
struct HTTP1PipeliningTests {
    @Test("40 pipelined requests in one write: 40 answers, in order")
    func pipelinedAnswersInOrder() async throws {
        try await withUnreachableUpstreamsGateway { port in try await checkPipelining(port: port) }
    }

    func checkPipelining(port: Int) async throws {
        // Answers that differ in status and in how long they take (the API key check needs
        // Accounts, which cannot be reached: 503 after a connection attempt).
        let targets = ["/healthz", "/v1/deliveries/d1/status", "/v1/no/such/route", "/openapi.json"]
        var wire = ""
        for index in 0..<40 {
            wire += "GET \(targets[index % 4]) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\(index)\r\nX-Request-Id: r\(index)\r\n\r\n"
        }
        let request = Array(wire.utf8)
        let answers = try await onOwnThread { try Self.exchange(port: port, request: request, expectedAnswers: 40) }
        #expect(answers.count == 40)
        for (index, answer) in answers.enumerated() {
            let expected = [200, 503, 404, 200][index % 4]
            #expect(answer.status == expected, "answer \(index)")
            #expect(answer.headers["x-request-id"] == "r\(index)", "answer \(index) belongs to request \(answer.headers["x-request-id"] ?? "?")")
        }
    }

    struct Answer {
        var status: Int
        var headers: [String: String]
    }

    /// Writes `request` on a fresh connection, then reads until `expectedAnswers` complete
    /// answers (each with a Content-Length body) have arrived or 10 seconds pass.
    static func exchange(port: Int, request: [UInt8], expectedAnswers: Int) throws -> [Answer] {
        let socket = try connectLoopback(port: port, receiveTimeout: 10)
        defer { close(socket) }
        _ = request.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) }

        var received: [UInt8] = []
        var answers: [Answer] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while answers.count < expectedAnswers {
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
            answers += Self.takeAnswers(&received)
        }
        return answers
    }

    /// Removes every complete answer from the front of `bytes`.
    static func takeAnswers(_ bytes: inout [UInt8]) -> [Answer] {
        var answers: [Answer] = []
        let separator = Array("\r\n\r\n".utf8)
        while let end = bytes.firstRange(of: separator) {
            let head = String(decoding: bytes[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
            var headers: [String: String] = [:]
            for line in head.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            guard bytes.count >= end.upperBound + length else { break }
            let status = Int(head[0].split(separator: " ")[1]) ?? 0
            answers.append(Answer(status: status, headers: headers))
            bytes.removeFirst(end.upperBound + length)
        }
        return answers
    }
}
