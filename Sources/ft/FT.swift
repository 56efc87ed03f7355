import ArgumentParser
import FTFrontEnd

#if canImport(Glibc)
import Glibc
#endif

@main
struct FT: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ft",
        abstract: "Move files across a LAN as fast as the kernel allows.",
        discussion: """
            On the receiving host:   ft recv --dir ~/incoming
            On the sending host:     ft send HOST PATH...

            Pushes are framed, verified end to end (xxh3-128) and written
            under a temp name until the hash matches. The receiver never
            overwrites a file unless run with --overwrite, and never writes
            outside its directory. Transfers run on io_uring; where the kernel
            refuses it, ft says so and falls back to poll(2).
            """,
        subcommands: [Send.self, Recv.self, Chat.self])

    @Flag(help: "Print the version, the commit, the protocol versions and whether io_uring works here.")
    var version = false

    func run() async throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(BuildInfo.versionText(program: "ft"))
    }

    /// Usage errors exit 2, failures 1, success 0.
    static func main() async {
        await runExiting { ($0 as? Failure)?.code }
    }
}

/// A failure already reported to the user; only the exit code is left
/// (ExitStatus has the table).
struct Failure: Error {
    var code: Int32 = ExitStatus.failed
}
