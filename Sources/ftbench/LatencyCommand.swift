import ArgumentParser
import FTBench
import FTEngine
import FTFrontEnd

struct Latency: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ping-pong through the engine (TCP, UDP) and a line through a chat room.",
        discussion: """
            TCP and UDP: an echo server and a client, both on io_uring rings, one
            -m byte message in flight, each round trip recorded in an HdrHistogram
            (1 ns to 10 s, 3 significant digits). The chat room path times a line
            from one client through `ft chat tcp --listen` to another (one way,
            two network hops, like a round trip). p50, p90, p99, p99.9 and max.

            Each engine loop looks for completions for --spin µs before it
            sleeps, as ft's chat loops do: on a VM a sleeping thread's
            wake-up costs ~100 µs. --spin 0 sleeps at once (what sockperf does).
            """)

    @Option(help: "Protocols: tcp, udp (comma list).")
    var proto: String = "tcp,udp"

    @Option(name: .short, help: "Message size in bytes.")
    var m: Int = 64

    @Option(name: .short, help: "Seconds per protocol.")
    var t: Double = 5

    @Flag(help: "Also time a line through an `ft chat tcp` room.")
    var chat = false

    @Option(help: "Microseconds each engine loop spins before sleeping (0: sleep at once).")
    var spin: UInt64 = URingBackend.latencySpinNanoseconds / 1000

    @OptionGroup var report: ReportOptions

    func validate() throws {
        try report.validateCommon()
        for p in list(proto) where p != "tcp" && p != "udp" { throw ValidationError("--proto '\(p)' is not tcp or udp") }
        guard (1...65_000).contains(m) else { throw ValidationError("-m must be 1 to 65000 bytes") }
        guard t > 0, t <= 3600 else { throw ValidationError("-t must be between 0 and 3600 seconds") }
        guard spin <= 10_000 else { throw ValidationError("--spin must be at most 10000 µs") }
    }

    func run() throws {
        var result = BenchReport(mode: "latency", command: CommandLine.arguments)
        for p in list(proto) {
            Console.stderr.line("ftbench: \(p) ping-pong of \(m) bytes for \(t) s")
            do {
                result.latency.append(try EnginePingPong.run(udp: p == "udp", messageBytes: m, seconds: t, engine: report.engine,
                                                             spin: spin * 1000, logger: benchLogger()))
            } catch {
                throw BenchFailure(message: "\(p) ping-pong: \(error)")
            }
        }
        if chat {
            Console.stderr.line("ftbench: a line through a chat room for \(t) s")
            do {
                result.latency.append(try ChatRoomLatency.run(ft: try ftBinary(), seconds: t, engine: report.engine))
            } catch let e as IOError {
                throw BenchFailure(message: "chat room: \(e)")
            }
        }
        try report.write(result)
    }
}
