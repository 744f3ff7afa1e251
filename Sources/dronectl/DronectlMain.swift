// dronectl: the command-line client of the drone delivery system, generated from proto/.
//
//   dronectl delivery get-delivery --delivery-id dlv-1 --server 127.0.0.1:50054
//   dronectl delivery track-delivery --delivery-id dlv-1 --transport http --api-key KEY
//   dronectl call grpc.health.v1.Health/Check --server host:port -d '{}'
//
// The service commands come from DroneCTLCommands (generated); the rest from DroneCTL.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Dispatch
import DroneCTL
import DroneCTLCommands
import Synchronization

struct Dronectl: AsyncParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "dronectl",
            abstract: "Call the drone delivery services over gRPC, or the public gateway over JSON/HTTP.",
            discussion: DroneCTLHelp.rootDiscussion,
            version: DroneCTLHelp.version,
            subcommands: GeneratedCommands.services + DroneCTLHelp.builtInCommands + [Contract.self, Completion.self]
        )
    }
}

/// `dronectl completion bash|zsh|fish`: the shell completion script (the same as
/// `dronectl --generate-completion-script SHELL`).
struct Completion: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the completion script for bash, zsh or fish.",
        discussion: """
            bash:  source <(dronectl completion bash)     (or save it in /etc/bash_completion.d/dronectl)
            zsh:   dronectl completion zsh > "${fpath[1]}/_dronectl"
            fish:  dronectl completion fish > ~/.config/fish/completions/dronectl.fish
            Commands, flags and enum values complete from the script; the services and methods of \
            `dronectl call`, `list` and `describe` are asked of the server named on the command line.
            """
    )

    @Argument(help: "bash, zsh or fish.", completion: .list(["bash", "zsh", "fish"]))
    var shell: String

    func run() throws {
        guard let kind = CompletionShell(rawValue: shell) else {
            throw ValidationError("unknown shell \"\(shell)\" (bash, zsh or fish)")
        }
        let script = Dronectl.completionScript(for: kind)
        Terminal.write(kind == .zsh ? Self.zshParameterNames(script) : script)
    }

    /// swift-argument-parser's zsh script keeps each option's value list in a local array named
    /// `___` + the option's name with dashes as underscores. Our nested-field flags carry dots
    /// (`--package-info.size`), which a zsh parameter name cannot: the function stops with
    /// "unknown file attribute" and nothing completes. Dots in those names become `__`.
    static func zshParameterNames(_ script: String) -> String {
        let bytes = Array(script.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + 64)
        func inName(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
        let underscore = UInt8(ascii: "_"), dot = UInt8(ascii: ".")
        var index = 0
        while index < bytes.count {
            guard index + 2 < bytes.count, bytes[index] == underscore, bytes[index + 1] == underscore, bytes[index + 2] == underscore else {
                output.append(bytes[index])
                index += 1
                continue
            }
            var end = index
            while end < bytes.count, inName(bytes[end]) { end += 1 }
            while end > index, bytes[end - 1] == dot { end -= 1 }  // a sentence's full stop
            for byte in bytes[index..<end] {
                if byte == dot { output.append(contentsOf: [underscore, underscore]) } else { output.append(byte) }
            }
            index = end
        }
        return String(decoding: output, as: UTF8.self)
    }
}

@main
enum DronectlMain {
    static func main() async {
        // A reader that goes away (dronectl ... | head) ends us through EPIPE, not a signal.
        signal(SIGPIPE, SIG_IGN)
        // Ctrl-C cancels the call (RST_STREAM) and the call reports CANCELLED; a second one exits.
        let task = Task {
            // The async parse: it answers the shell's dynamic completion requests (---completion),
            // whose closures ask the server by reflection and so are async.
            var command = try await Dronectl.asyncParseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        }
        let interrupts = cancelOnInterrupt(task)
        do {
            try await task.value
        } catch {
            exitAfter(error)
        }
        interrupts.cancel()
        exit(0)
    }

    /// Ctrl-C cancels `task` (the call sends RST_STREAM and reports CANCELLED); a second one
    /// exits at once. Nonisolated and @Sendable on purpose: the handler runs on a dispatch
    /// queue, and a closure inheriting main()'s main-actor isolation would trap there.
    nonisolated static func cancelOnInterrupt(_ task: Task<Void, any Error>) -> any DispatchSourceSignal {
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: DispatchQueue(label: "dronectl.interrupts"))
        let counter = InterruptCount()
        source.setEventHandler { @Sendable in
            if counter.next() > 1 { exit(130) }
            task.cancel()
        }
        source.resume()
        return source
    }

    /// Exits as the error says: usage errors with 2 (argument parser's own would be 64, which
    /// dronectl keeps for 64 + a gRPC status code), help and version with 0, `ExitCode` with its code.
    static func exitAfter(_ error: any Error) -> Never {
        if Dronectl.exitCode(for: error) == .validationFailure {
            Terminal.error(Dronectl.fullMessage(for: error))
            exit(ExitStatus.usage)
        }
        Dronectl.exit(withError: error)
    }
}

/// How many times Ctrl-C was pressed.
final class InterruptCount: Sendable {
    private let count = Mutex(0)
    func next() -> Int { count.withLock { $0 += 1; return $0 } }
}
