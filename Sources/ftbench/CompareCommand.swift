import ArgumentParser
import FTBench
import FTFrontEnd

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "ft against the peers on PATH, alternating runs, with the project's goals.",
        discussion: """
            Workloads (PEERS.md has the exact peer commands):
              file     a big page-cached file → file: ft, socat -b 1M, nc
                       goal: ft ≤ 0.9 × socat (wall)
              memory   the same file → memory: ft, ft --no-verify, ft --encrypt, socat, nc, iperf3 -F -Z
                       goals: ft ≤ 0.6 × socat (wall), ≤ 0.5 × (CPU)
              small    many small files: ft, tar | nc, rsync daemon
                       goals: ft ≤ 0.7 × tar|nc, ≤ 0.3 × rsync
              latency  TCP and UDP ping-pong through the engine vs sockperf (--full-rtt);
                       a line through an ft chat room vs sockperf TCP
                       goals: p50 ≤ 1.1 ×, p99 ≤ 1.2 × sockperf; chat room p50 ≤ 1.5 ×
            A peer missing from PATH is listed as skipped. A run that exceeds
            --timeout is killed and marked.
            """)

    @Option(help: "Size of the big file.")
    var size: String = "2G"

    @Option(help: "Number of small files.")
    var files: Int = 10_000

    @Option(help: "Size of each small file.")
    var fileSize: String = "4K"

    @Option(help: "Alternating runs per tool.")
    var `repeat`: Int = 5

    @Option(name: .short, help: "Seconds per latency measurement.")
    var t: Double = 5

    @Option(name: .short, help: "Latency message size in bytes.")
    var m: Int = 64

    @Option(help: "Workloads to run: file, memory, small, latency (comma list).")
    var only: String = "file,memory,small,latency"

    @Option(help: ArgumentHelp("Scratch directory (default: a new one in /tmp, removed after).", valueName: "dir"))
    var work: String?

    @OptionGroup var report: ReportOptions

    func validate() throws {
        try report.validateCommon()
        guard let s = Sizes.parse(size), s > 0 else { throw ValidationError("--size '\(size)' is not a size") }
        guard let f = Sizes.parse(fileSize), f > 0 else { throw ValidationError("--file-size '\(fileSize)' is not a size") }
        _ = (s, f)
        guard files >= 1 else { throw ValidationError("--files must be at least 1") }
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard t > 0 else { throw ValidationError("-t must be positive") }
        guard (1...65_000).contains(m) else { throw ValidationError("-m must be 1 to 65000 bytes") }
        let known: Set<String> = ["file", "memory", "small", "latency"]
        for w in list(only) where !known.contains(w) { throw ValidationError("--only '\(w)' is not one of file, memory, small, latency") }
    }

    func run() throws {
        let ft = try ftBinary()
        let (work, scratch) = try workDirectory(self.work)
        defer { if scratch { _ = try? Spawned(["rm", "-rf", work]).wait(timeoutSeconds: 120) } }
        var options = CompareSuite.Options(work: work)
        options.fileBytes = Sizes.parse(size)!
        options.smallFiles = files
        options.smallFileBytes = Int(Sizes.parse(fileSize)!)
        options.repeats = `repeat`
        options.latencySeconds = t
        options.messageBytes = m
        options.timeoutSeconds = report.timeout
        options.workloads = Set(list(only))
        options.engine = report.engine
        let throttle = Throttle()
        let suite = CompareSuite(options: options, ft: ft, logger: benchLogger()) { throttle.say($0) }
        let result: BenchReport
        do { result = try suite.run() } catch { throw BenchFailure(message: error.description) }
        try report.write(result)
    }
}
