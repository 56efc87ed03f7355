import ArgumentParser
import FTFrontEnd
import FTTransfer

#if canImport(Glibc)
import Glibc
#endif

@main
struct FTBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ftbench",
        abstract: "Measure ft's data paths side by side with nc, socat, iperf3 and sockperf.",
        discussion: """
            throughput  sweep ft's io paths and chunk sizes on loopback (or against
                        `ftbench serve` on another host with --connect)
            latency     TCP and UDP ping-pong through the engine, and a line through a
                        chat room, with HdrHistogram percentiles
            compare     ft against the peers found on PATH, alternating runs, medians,
                        ratios and the goals the project tracks

            Results print as tables; --json FILE writes them with the documented
            schema (docs/ftbench-json.md) and --svg FILE draws them. The machine
            is noisy: compare ratios from one run, never absolute figures.
            """,
        subcommands: [Throughput.self, Latency.self, Compare.self, Serve.self])

    @Flag(help: "Print the version, the commit, the protocol versions and whether io_uring works here.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(BuildInfo.versionText(program: "ftbench"))
    }

    /// Usage errors (and unreachable targets) exit 2, failures 1.
    static func main() {
        // The ft pairs ftbench starts share a code of its own making (a
        // `--connect` target needs the user's FT_CODE, which is kept).
        if getenv("FT_CODE") == nil { setenv("FT_CODE", AuthCode.generate(), 1) }
        runExiting { error in
            guard let e = error as? BenchFailure else { return nil }
            Console.stderr.line("ftbench: \(e.message)")
            return e.code
        }
    }
}

struct BenchFailure: Error {
    var message: String
    var code: Int32 = 1
}
