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

    /// Drives an interactive zsh through a pseudo-terminal (zsh/zpty): the script is sourced
    /// after compinit, `line` is typed followed by TAB, and every candidate that reaches
    /// `compadd` is printed between markers.
    static let zshDriver = #"""
        zmodload zsh/zpty
        zpty z zsh -f -i
        zpty -w z "source ${0:A:h}/setup.zsh"
        local line
        while zpty -r z line; do [[ $line == *"<<READY>>"* && $line != *print* ]] && break; done
        zpty -n -w z "$1"$'\t'
        while zpty -r z line; do
          [[ $line == *"<<END>>"* && $line != *print* ]] && break
          [[ $line == *"<<HIT>>"* && $line != *print* ]] && print -r -- ${${line##*<<HIT>>}//$'\r'/}
        done
        zpty -d z
        """#
    static let zshSetup = #"""
        PROMPT='> '; RPROMPT=
        autoload -Uz compinit; compinit -u -D
        source <(dronectl completion zsh)
        compprefuncs=(); comppostfuncs=(_done)
        _done() { print -r -- "<<END>>" }
        compadd() {
          if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
          local -a __hits; builtin compadd -A __hits "$@"; (( $#__hits )) || return 1
          local h; for h in $__hits; do print -r -- "<<HIT>>$h"; done
        }
        bindkey '^I' complete-word
        print -r -- "<<READY>>"
        """#

    /// What zsh or fish offers for the last word of `line`, in a real shell with the script
    /// `dronectl completion SHELL` prints (dronectl on the PATH, as after `make install`).
    static func complete(in shell: String, _ line: String) throws -> [String] {
        let process = Process()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dronectl-completion-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        switch shell {
        case "zsh":
            try zshDriver.write(to: directory.appendingPathComponent("complete.zsh"), atomically: true, encoding: .utf8)
            try zshSetup.write(to: directory.appendingPathComponent("setup.zsh"), atomically: true, encoding: .utf8)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/zsh")
            process.arguments = ["-f", directory.appendingPathComponent("complete.zsh").path, line]
        default:
            process.executableURL = URL(fileURLWithPath: "/usr/bin/fish")
            process.arguments = ["--no-config", "-c", "dronectl completion fish | source; complete -C $argv[1]", line]
        }
        let binDirectory = URL(fileURLWithPath: Dronectl.binary).deletingLastPathComponent().path
        process.environment = ["PATH": "\(binDirectory):/usr/bin:/bin", "DRONECTL_CONFIG": "/nonexistent/dronectl.json", "HOME": directory.path, "TERM": "dumb"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // A shell that hangs (a prompt the driver never recognises) is ended, and the test fails.
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        #expect(process.terminationStatus == 0, "\(shell) ended with \(process.terminationStatus)")
        // fish prints "candidate<TAB>description".
        return String(decoding: data, as: UTF8.self).split(separator: "\n")
            .map { String($0.split(separator: "\t", maxSplits: 1).first ?? "") }.filter { !$0.isEmpty }
    }

    @Test("zsh and fish, each in a real shell: commands, flags, enum values of nested fields, and a server's methods", arguments: ["zsh", "fish"])
    func otherShells(shell: String) throws {
        #expect(try Self.complete(in: shell, "dronectl deli").sorted() == ["delivery", "delivery-history"])
        let flags = try Self.complete(in: shell, "dronectl delivery get-delivery --ser")
        #expect(flags.sorted() == ["--server", "--servername"], "\(flags)")
        let sizes = try Self.complete(in: shell, "dronectl ingestion create-delivery --package-info.size ")
        #expect(sizes.sorted() == ["PACKAGE_SIZE_LARGE", "PACKAGE_SIZE_MEDIUM", "PACKAGE_SIZE_SMALL", "PACKAGE_SIZE_UNSPECIFIED"], "\(sizes)")
        #expect(try Dronectl().run(["completion", "tcsh"]).status == 2)
        // fish's `complete -C` (how a script asks fish for completions) has no cursor, and the
        // script's call back into dronectl passes the cursor's place in the word: fish's dynamic
        // case runs at a terminal (TerminalSessionTests), zsh's (and bash's) here.
        guard shell == "zsh" else { return }
        let server = try TestServer.interop()
        defer { server.stop() }
        let methods = try Self.complete(in: shell, "dronectl call --server \(server.address) grpc.testing.TestService/")
        #expect(methods.contains("grpc.testing.TestService/UnaryCall"), "\(methods)")
    }
}
