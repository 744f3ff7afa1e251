import ArgumentParser
import DroneCTL
import DroneCTLCommands

/// `dronectl contract`: the contracts in proto/ checked against a running server.
struct Contract: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a server against the contracts in proto/.",
        subcommands: [Verify.self]
    )

    /// `dronectl contract verify --server host:port`.
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Provider verification: every RPC of every contract service the server offers.",
            discussion: """
                For each method: the example scenarios (proto/fabrikam/dronedelivery/examples), a request built \
                from the field rules when no example called it, and for every field rule a request that breaks \
                it (the server must answer INVALID_ARGUMENT with a google.rpc.BadRequest naming the field). \
                Every response must decode and obey its field rules; every status other than OK must be one \
                the method declares (--statuses). The verification writes (it registers, creates, cancels): \
                run it against a test deployment.

                Exit codes: 0 every check passed; 1 a check failed (or nothing could be verified); 2 usage.
                """
        )

        @OptionGroup var flags: ContractVerifyFlags

        func run() async throws {
            let code = await ContractCommandSupport.run(flags, files: GeneratedCommands.files)
            if code != 0 { throw ExitCode(code) }
        }
    }
}
