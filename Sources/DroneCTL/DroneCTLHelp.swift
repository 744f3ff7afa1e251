import ArgumentParser

/// Text and commands of the `dronectl` root that are not generated.
public enum DroneCTLHelp {
    public static let version = "0.1.0"

    /// The built-in commands, after the generated service commands.
    public static var builtInCommands: [any ParsableCommand.Type] {
        [ListCommand.self, DescribeCommand.self, CallCommand.self, ConfigCommand.self]
    }

    public static let rootDiscussion = """
        Each service of proto/ is a command and each RPC a subcommand, with a flag per request field \
        (dronectl SERVICE METHOD --help). Requests can also be given whole as JSON with -d.

        Where calls go: --server, else DRONECTL_SERVER, else the current context of the configuration \
        file (dronectl config --help). --transport http sends the same call to the public gateway.

        Exit codes: 0 OK; 1 dronectl failed (a file it could not read); 2 usage (a flag, the request or \
        the configuration is wrong, nothing was sent); 64 + n the call ended with gRPC status n \
        (65 CANCELLED, 68 DEADLINE_EXCEEDED, 69 NOT_FOUND, 78 UNAVAILABLE, 80 UNAUTHENTICATED, ...).
        """
}
