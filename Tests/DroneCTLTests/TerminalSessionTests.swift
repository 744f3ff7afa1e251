#if canImport(Glibc)
import Glibc
#endif
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
        /// The tmux server's and the window's shell's process ids, killed at the end whatever happened.
        var processes: [pid_t] = []

        init(_ command: String) throws {
            try tmux(["new-session", "-d", "-s", "main", "-x", "220", "-y", "50",
                      "env DRONECTL_CONFIG=/nonexistent/dronectl.json \(command); echo EXIT=$?; exec sleep 120"])
            processes = try tmux(["display-message", "-p", "-t", "main", "#{pid} #{pane_pid}"])
                .split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) }
        }

        deinit {
            _ = try? tmux(["kill-server"])
            for pid in processes { kill(pid, SIGKILL) }
        }

        /// Runs tmux with `arguments` and returns what it printed. Spawned and waited for here,
        /// not with Foundation's Process: new-session forks the tmux server, which keeps the
        /// descriptors it inherits (a pipe there is never closed), and Process.waitUntilExit on
        /// the test's thread never saw the tmux client exit (the test hung with a zombie client).
        @discardableResult
        func tmux(_ arguments: [String]) throws -> String {
            let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("\(socket)-\(UUID().uuidString).out").path
            defer { unlink(outputPath) }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            let argv = (["/usr/bin/tmux", "-L", socket] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            let spawned = posix_spawn(&pid, "/usr/bin/tmux", &actions, nil, argv, environ)
            guard spawned == 0 else { throw StartFailure(what: "tmux \(arguments.first ?? "")", output: "posix_spawn: \(spawned)") }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            // Exited normally with 0 (WIFEXITED and WEXITSTATUS, spelled out: they are macros).
            guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
                throw StartFailure(what: "tmux \(arguments.joined(separator: " "))", output: "wait status \(status): \(output)")
            }
            return output
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

    @Test("fish at a terminal: TAB after a service's name lists the methods the server on the line offers (dynamic completion)")
    func fishDynamicCompletion() async throws {
        let server = try TestServer.interop()
        defer { server.stop() }
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-fish-\(getpid())").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let binDirectory = URL(fileURLWithPath: Dronectl.binary).deletingLastPathComponent().path
        let session = try Session("env PATH=\(binDirectory):/usr/bin:/bin HOME=\(home) fish --no-config")
        try session.type("dronectl completion fish | source; echo SOURCED")
        try await session.waitFor("SOURCED")
        try session.tmux(["send-keys", "-t", "main", "-l", "dronectl call --server \(server.address) grpc.testing.TestService/"])
        try session.tmux(["send-keys", "-t", "main", "Tab"])
        // fish lists the candidates under the line, their common prefix shortened to "…".
        let screen = try await session.waitFor("Service/FullDuplexCall")
        #expect(screen.contains("Service/UnaryCall"), "\(screen)")
        #expect(screen.contains("Service/StreamingOutputCall"), "\(screen)")
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
        // A minute lies between the first message and the second: the first is on the screen
        // before the call has ended. (With 1.5 s, a screen poll held up that long on a loaded
        // machine saw the end as well.) Ctrl-C then ends the call.
        let slow = #"{"responseParameters":[{"size":1,"intervalUs":1500000},{"size":2,"intervalUs":60000000}]}"#
        let session = try Session("\(Dronectl.binary) call grpc.testing.TestService/StreamingOutputCall --server \(server.address) -d '\(slow)'")
        let first = try await session.waitFor(#"{"payload":{"body":"AA=="}}"#)
        #expect(!first.contains("EXIT="), "\(first)")
        try session.interrupt()
        let cancelled = try await session.waitFor("EXIT=")
        #expect(!cancelled.contains(#"{"payload":{"body":"AAA="}}"#), "\(cancelled)")
        #expect(cancelled.contains("EXIT=65"), "\(cancelled)")
        // A stream that ends: every message, then exit status 0.
        let short = #"{"responseParameters":[{"size":1},{"size":2},{"size":3}]}"#
        let whole = try Session("\(Dronectl.binary) call grpc.testing.TestService/StreamingOutputCall --server \(server.address) -d '\(short)'")
        let done = try await whole.waitFor("EXIT=")
        #expect(done.contains(#"{"payload":{"body":"AAAA"}}"#), "\(done)")
        #expect(done.contains("EXIT=0"), "\(done)")

        let watch = try Session("\(Dronectl.binary) health watch --server \(server.address)")
        try await watch.waitFor(#"{"status":"SERVING"}"#)
        try watch.interrupt()
        let ended = try await watch.waitFor("EXIT=")
        #expect(ended.contains("EXIT=65"), "\(ended)")
    }
}
