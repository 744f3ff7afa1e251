import Foundation
import Testing
import TestSupport

/// The completion scripts, exercised in a real bash the way it completes a word: the script is
/// sourced, COMP_WORDS/COMP_CWORD/COMP_LINE describe the line, and its function fills COMPREPLY.
@Suite("Shell completion", .serialized)
struct CompletionTests {
    /// What bash offers for the last word of `line` (a line ending in a space completes a new word).
    static func complete(_ line: String) throws -> [String] {
        let script = """
            source <("$DRONECTL" completion bash) || exit 3
            COMP_LINE="$1"
            COMP_POINT=${#COMP_LINE}
            read -ra COMP_WORDS <<< "$COMP_LINE"
            COMP_WORDS[0]="$DRONECTL"
            [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            function=$(complete -p dronectl | sed -E 's/.*-F ([^ ]+).*/\\1/')
            "$function" dronectl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\\n' "${COMPREPLY[@]}"
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script, "complete", line]
        process.environment = ["DRONECTL": Dronectl.binary, "PATH": "/usr/bin:/bin", "DRONECTL_CONFIG": "/nonexistent/dronectl.json"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    @Test("commands: services, built-ins, and the RPCs of a service")
    func commands() throws {
        let top = try Self.complete("dronectl ")
        for command in ["delivery", "drone-scheduler", "ingestion", "health", "list", "describe", "call", "config", "completion"] {
            #expect(top.contains(command), "\(command) not in \(top)")
        }
        #expect(try Self.complete("dronectl deli") .sorted() == ["delivery", "delivery-history"])
        let rpcs = try Self.complete("dronectl delivery ")
        #expect(rpcs.contains("track-delivery"))
        #expect(rpcs.contains("get-delivery-status"))
    }

    @Test("flags of a method, nested field flags included")
    func flags() throws {
        let flags = try Self.complete("dronectl ingestion create-delivery --pack")
        #expect(flags.contains("--package-info.weight"), "\(flags)")
        #expect(flags.contains("--package-info.size"))
        let call = try Self.complete("dronectl delivery get-delivery --ser")
        #expect(call.sorted() == ["--server", "--servername"], "\(call)")
    }

    @Test("enum values of an enum field")
    func enumValues() throws {
        let values = try Self.complete("dronectl ingestion create-delivery --package-info.size ")
        #expect(values.sorted() == ["PACKAGE_SIZE_LARGE", "PACKAGE_SIZE_MEDIUM", "PACKAGE_SIZE_SMALL", "PACKAGE_SIZE_UNSPECIFIED"], "\(values)")
        let formats = try Self.complete("dronectl delivery get-delivery -o ")
        #expect(formats.sorted() == ["envelope", "json", "text"], "\(formats)")
    }

    @Test("dynamic: the services and methods of the server on the command line")
    func dynamic() throws {
        let server = try TestServer.interop()
        defer { server.stop() }
        let methods = try Self.complete("dronectl call --server \(server.address) grpc.testing.TestService/")
        #expect(methods.contains("grpc.testing.TestService/FullDuplexCall"), "\(methods)")
        #expect(methods.contains("grpc.testing.TestService/UnaryCall"))
        let services = try Self.complete("dronectl list --server \(server.address) ")
        #expect(services.contains("grpc.health.v1.Health"), "\(services)")
        // No server answering: nothing to offer, and no error in the terminal.
        #expect(try Self.complete("dronectl call --server 127.0.0.1:1 grpc.") == [])
    }

    @Test("zsh and fish scripts are generated for the same commands")
    func otherShells() throws {
        let zsh = try Dronectl().run(["completion", "zsh"])
        #expect(zsh.status == 0)
        #expect(zsh.output.contains("#compdef dronectl"))
        #expect(zsh.output.contains("package-info.size"))
        let fish = try Dronectl().run(["completion", "fish"])
        #expect(fish.status == 0)
        #expect(fish.output.contains("track-delivery"))
        #expect(try Dronectl().run(["completion", "tcsh"]).status == 2)
    }
}
