import Foundation
import Testing
import TestSupport

/// dronectl's streams in a real terminal, driven through tmux: typed requests answered while the
/// call stays open, messages printed as they arrive, Ctrl-C cancelling with CANCELLED (65).
@Suite("Terminal session (tmux)", .serialized)
struct TerminalSessionTests {
    /// One tmux server of its own, with one window running `command`.
    final class Session {
        let socket = "dronectl-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

        init(_ command: String) throws {
            try tmux(["new-session", "-d", "-s", "main", "-x", "220", "-y", "50",
                      "env DRONECTL_CONFIG=/nonexistent/dronectl.json \(command); echo EXIT=$?; sleep 120"])
        }

        deinit { _ = try? tmux(["kill-server"]) }

        @discardableResult
        func tmux(_ arguments: [String]) throws -> String {
            String(decoding: try run("/usr/bin/tmux", ["-L", socket] + arguments), as: UTF8.self)
        }

        func type(_ text: String) throws { try tmux(["send-keys", "-t", "main", "-l", text]); try tmux(["send-keys", "-t", "main", "Enter"]) }
        func interrupt() throws { try tmux(["send-keys", "-t", "main", "C-c"]) }
        var screen: String { (try? tmux(["capture-pane", "-p", "-t", "main", "-S", "-100"])) ?? "" }

        /// Waits until the screen shows `text`; returns the screen then.
        @discardableResult
        func waitFor(_ text: String, timeout: Duration = .seconds(20)) async throws -> String {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let current = screen
                if current.contains(text) { return current }
                try await Task.sleep(for: .milliseconds(50))
            }
            Issue.record("the screen never showed \(text):\n\(screen)")
            throw CancellationError()
        }
    }

    @Test("bidirectional: each typed request is answered before the next is typed; Ctrl-C cancels")
    func typedBidirectionalStream() async throws {
        let server = try TestServer.interop()
        defer { server.stop() }
        let session = try Session("\(Dronectl.binary) call grpc.testing.TestService/FullDuplexCall --server \(server.address) -d @-")
        try session.type(#"{"responseParameters":[{"size":1}]}"#)
        try await session.waitFor(#"{"payload":{"body":"AA=="}}"#)
        try session.type(#"{"responseParameters":[{"size":2}]}"#)
        try await session.waitFor(#"{"payload":{"body":"AAA="}}"#)
        try session.interrupt()
        let screen = try await session.waitFor("EXIT=")
        #expect(screen.contains("error: CANCELLED"), "\(screen)")
        #expect(screen.contains("EXIT=65"), "\(screen)")
    }

    @Test("server streaming: messages appear as the server sends them; Ctrl-C ends a stream that never ends")
    func serverStreamAsItArrives() async throws {
        let server = try TestServer.interop()
        defer { server.stop() }
        let slow = #"{"responseParameters":[{"size":1,"intervalUs":1500000},{"size":2,"intervalUs":1500000},{"size":3,"intervalUs":1500000}]}"#
        let session = try Session("\(Dronectl.binary) call grpc.testing.TestService/StreamingOutputCall --server \(server.address) -d '\(slow)'")
        let first = try await session.waitFor(#"{"payload":{"body":"AA=="}}"#)
        // 1.5 s lie between messages: the first is on the screen before the call has ended.
        #expect(!first.contains("EXIT="), "\(first)")
        let done = try await session.waitFor("EXIT=")
        #expect(done.contains(#"{"payload":{"body":"AAAA"}}"#))
        #expect(done.contains("EXIT=0"), "\(done)")

        let watch = try Session("\(Dronectl.binary) health watch --server \(server.address)")
        try await watch.waitFor(#"{"status":"SERVING"}"#)
        try watch.interrupt()
        let ended = try await watch.waitFor("EXIT=")
        #expect(ended.contains("EXIT=65"), "\(ended)")
    }
}
