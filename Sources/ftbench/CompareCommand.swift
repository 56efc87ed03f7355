import ArgumentParser
import FTBench
import FTFrontEnd

#if canImport(Glibc)
import Glibc
#endif

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "ft against the peers on PATH, alternating runs, with the project's goals.",
        discussion: """
            Workloads (docs/BENCHMARKS.md has the exact peer commands):
              file     a big page-cached file → file: ft, socat -b 1M, nc
                       goal: ft ≤ 0.8 × socat (wall); pinned ≤ 0.9 × (wall, CPU)
              memory   the same file → memory: ft, ft --no-verify, ft --io sendfile,
                       ft --encrypt (AES-256-GCM here if the CPU has AES-NI),
                       ft --encrypt chacha, socat, nc, iperf3 -F -Z
                       goals: ft ≤ 0.6 × socat (wall), ≤ 0.5 × (CPU); pinned ≤ 0.9 ×;
                       --encrypt ≤ 1.25 × ft's wall (≥ 0.8 × its throughput) and
                       sealing ≤ 0.35 sender CPU-s per GiB over ft
              small    10,000 × 4 KiB files, then 100,000 × 0.5-1 KiB (--many-files):
                       ft, tar | nc, rsync daemon -aHS
                       goals: ft ≤ 0.7 × tar|nc and ≤ 0.3 × rsync; ≤ 0.8 × tar|nc
              tree     the directory given with --tree, as it is (symlinks, hard
                       links, holes): ft, tar --sparse | nc, rsync daemon -aHS
                       goals: ft ≤ 0.8 × tar|nc, ≤ 0.3 × rsync
            Tree workloads write each run into a new directory on tmpfs
            (--tree-output; ext4 swings 10× after mass deletions) and add
            ft's peak RSS per side (limit 32 MiB). --pin puts the sender on
            CPU 0 and the receiver on CPU 1, as two one-core hosts (their
            helper threads too): file and memory then report pinned rows
            beside the unpinned ones.
              latency  TCP and UDP ping-pong through the engine (its loops spin 50 µs
                       before sleeping, as ft's chat loops do) vs sockperf (--full-rtt);
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

    @Option(help: "Files in the second small-files row, 0.5-1 KiB each (0: no such row).")
    var manyFiles: Int = 100_000

    @Option(help: ArgumentHelp("A directory to push as the tree workload (adds it to --only).", valueName: "dir"))
    var tree: String?

    @Option(help: ArgumentHelp("Where tree workloads write (default: a new directory in /dev/shm).", valueName: "dir"))
    var treeOutput: String?

    @Option(help: "Peers of the small and tree workloads: tar, rsync (comma list).")
    var treePeers: String = "tar,rsync"

    @Flag(help: ArgumentHelp("Sender on CPU 0, receiver on CPU 1 (two one-core hosts).",
                             discussion: "file and memory then run twice, unpinned and pinned, and report both; the tree workloads run pinned only."))
    var pin = false

    @Flag(help: ArgumentHelp("The --tree workload read from disk: the page cache is dropped before every run.",
                             discussion: "Each tool then reads the tree as a first push of files that nobody touched lately does. Needs root (it writes /proc/sys/vm/drop_caches) and a tree on a disk filesystem (tmpfs has nothing to drop); the rows say (cold) and run beside the page-cached ones."))
    var cold = false

    @Option(help: "Alternating runs per tool.")
    var `repeat`: Int = 5

    @Option(name: .short, help: "Seconds per latency measurement.")
    var t: Double = 5

    @Option(name: .short, help: "Latency message size in bytes.")
    var m: Int = 64

    @Option(help: "Workloads to run: file, memory, small, tree, latency (comma list).")
    var only: String = Self.defaultOnly
    static let defaultOnly = "file,memory,small,latency"

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
        let known: Set<String> = ["file", "memory", "small", "tree", "latency"]
        for w in list(only) where !known.contains(w) { throw ValidationError("--only '\(w)' is not one of file, memory, small, tree, latency") }
        for p in list(treePeers) where !["tar", "rsync"].contains(p) { throw ValidationError("--tree-peers '\(p)' is not one of tar, rsync") }
        guard manyFiles >= 0 else { throw ValidationError("--many-files must be 0 or more") }
        if list(only).contains("tree"), tree == nil { throw ValidationError("--only tree needs --tree DIR, the directory to push") }
        if let tree {
            var st = stat()
            guard stat(tree, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                throw ValidationError("--tree '\(tree)' is not a directory (\(String(cString: strerror(errno))))")
            }
        }
        if cold, tree == nil { throw ValidationError("--cold is for the --tree workload: name the directory with --tree DIR") }
        if cold, geteuid() != 0 {
            throw ValidationError("--cold drops the page cache before each run (/proc/sys/vm/drop_caches), which needs root; run ftbench as root or leave out --cold")
        }
        if pin, sysconf(Int32(_SC_NPROCESSORS_ONLN)) < 2 { throw ValidationError("--pin needs two CPUs; this host has one") }
    }

    func run() throws {
        let ft = try ftBinary()
        let (work, scratch) = try workDirectory(self.work)
        defer { if scratch { _ = try? Spawned(["rm", "-rf", work]).wait(timeoutSeconds: 120) } }
        var options = CompareSuite.Options(work: work)
        options.fileBytes = Sizes.parse(size)!
        options.smallFiles = files
        options.smallFileBytes = Int(Sizes.parse(fileSize)!)
        options.manyFiles = manyFiles
        options.tree = tree.map { $0.hasPrefix("/") ? $0 : FileManagerless.cwd() + "/" + $0 }
        options.pin = pin
        options.cold = cold
        options.treePeers = Set(list(treePeers))
        var workloads = Set(list(only))
        if tree != nil, only == Self.defaultOnly { workloads = ["tree"] } else if tree != nil { workloads.insert("tree") }
        let (output, madeOutput) = try treeOutputDirectory(treeOutput, needed: workloads.contains("small") || workloads.contains("tree"))
        defer { if madeOutput, let output { _ = try? Spawned(["rm", "-rf", output]).wait(timeoutSeconds: 300) } }
        options.treeOutput = output
        options.repeats = `repeat`
        options.latencySeconds = t
        options.messageBytes = m
        options.timeoutSeconds = report.timeout
        options.workloads = workloads
        options.engine = report.engine
        let throttle = Throttle()
        let suite = CompareSuite(options: options, ft: ft, logger: benchLogger()) { throttle.say($0) }
        let result: BenchReport
        do { result = try suite.run() } catch { throw BenchFailure(message: error.description) }
        try report.write(result)
    }
}
