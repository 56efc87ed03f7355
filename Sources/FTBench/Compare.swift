import CURing
import FTEngine
import FTFrontEnd
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `ftbench compare`: ft and its peers on the same workloads, in
/// alternating order, with the goals the project tracks.
package struct CompareSuite {
    package struct Options: Sendable {
        package var fileBytes: UInt64 = 2 << 30
        package var smallFiles = 10_000
        package var smallFileBytes = 4096
        /// The second small-files row: this many files of 0.5-1 KiB (0: none).
        package var manyFiles = 100_000
        /// A tree the user names (`--tree`): pushed as it is.
        package var tree: String?
        /// Where tree workloads write, one fresh directory per run (tmpfs
        /// by default: ext4 swings after mass deletions).
        package var treeOutput: String?
        /// Sender on CPU 0, receiver on CPU 1: two one-core hosts.
        package var pin = false
        /// The --tree workload again, the page cache dropped before each run.
        package var cold = false
        /// Peers of the tree workloads ("tar", "rsync").
        package var treePeers: Set<String> = ["tar", "rsync"]
        package var latencySeconds = 5.0
        package var messageBytes = 64
        package var repeats = 5
        package var timeoutSeconds = 120.0
        package var workloads: Set<String> = ["file", "memory", "small", "latency"]
        package var work: String
        package var engine: EnginePreference = .auto

        package init(work: String) { self.work = work }
    }

    package let options: Options
    package let recipes: Recipes
    package let logger: Logger
    let bench: Workbench
    let progress: (String) -> Void

    package init(options: Options, ft: String, logger: Logger, progress: @escaping (String) -> Void) {
        self.options = options
        self.recipes = Recipes(ft: ft, engine: options.engine)
        self.logger = logger
        self.progress = progress
        var bench = Workbench(timeoutSeconds: options.timeoutSeconds, log: options.work + "/participants.log")
        bench.pin = options.pin
        self.bench = bench
    }

    /// A tool in a workload: how to run it, or why it cannot run here.
    struct Contender {
        var label: String
        var make: () -> TransferCommand
        var missing: String?
    }

    static func need(_ programs: [String]) -> String? {
        let missing = programs.filter { which($0) == nil }
        return missing.isEmpty ? nil : "\(missing.joined(separator: ", ")) not on PATH (tools/deps installs it)"
    }

    package func run() throws(IOError) -> BenchReport {
        var report = BenchReport(mode: "compare", command: CommandLine.arguments)
        let w = options.work
        let src = w + "/source.bin"
        let dst = w + "/out"
        mkdir(dst, 0o755)
        let size = options.fileBytes
        let sizeText = Sizes.format(size)

        if options.workloads.contains("file") || options.workloads.contains("memory") {
            progress("compare: preparing a \(sizeText) source file")
            try Fixtures.file(src, bytes: size)
        }
        // Unpinned, then (--pin) as two one-core hosts, side by side.
        for pinned in options.pin ? [false, true] : [false] {
            bigFile(src, dst, size: size, pinned: pinned, into: &report)
        }
        let output = options.treeOutput ?? dst
        if options.workloads.contains("small") {
            let tree = w + "/tree"
            progress("compare: preparing \(options.smallFiles) files of \(options.smallFileBytes) bytes")
            try Fixtures.tree(tree, count: options.smallFiles, bytes: options.smallFileBytes...options.smallFileBytes)
            let name = "\(options.smallFiles) × \(Sizes.format(UInt64(options.smallFileBytes))) files"
            report.comparisons += treeRace(name, tree, output: output, bytes: UInt64(options.smallFiles * options.smallFileBytes),
                                           goals: ["tar | nc": 0.7, "rsync daemon": 0.3])
            if options.manyFiles > 0 {
                let many = w + "/many"
                progress("compare: preparing \(options.manyFiles) files of 0.5-1 KiB")
                try Fixtures.tree(many, count: options.manyFiles, bytes: 512...1024)
                report.comparisons += treeRace("\(options.manyFiles) × 0.5-1 KiB files", many, output: output,
                                               bytes: UInt64(options.manyFiles) * 768, goals: ["tar | nc": 0.8])
            }
        }
        if options.workloads.contains("tree"), let tree = options.tree {
            progress("compare: reading \(tree) into the page cache")
            let bytes = Fixtures.warmTree(tree)
            report.comparisons += treeRace("tree \(tree)", tree, output: output, bytes: bytes,
                                           goals: ["tar | nc": 0.8, "rsync daemon": 0.3])
            if options.cold {
                // The goals are for a page-cached tree; these rows are measured.
                report.comparisons += treeRace("tree \(tree) (cold)", tree, output: output, bytes: bytes, goals: [:],
                                               beforeEach: Fixtures.dropPageCache)
            }
        }
        if options.workloads.contains("latency") {
            report.latency += latency(&report)
        }
        return report
    }

    /// ft, `tar | nc` and the rsync daemon push `tree`, each run into a
    /// new directory under `output`.
    func treeRace(_ name: String, _ tree: String, output: String, bytes: UInt64, goals: [String: Double],
                  beforeEach: (() -> Void)? = nil) -> [Comparison] {
        let r = recipes
        let w = options.work
        let fresh = RunDirectories(under: output)
        var contenders = [Contender(label: "ft", make: { r.ftTree(tree, into: fresh.next()) })]
        if options.treePeers.contains("tar") {
            contenders.append(Contender(label: "tar | nc", make: { r.tarNC(tree, into: fresh.next()) }, missing: Self.need(["tar", "nc"])))
        }
        if options.treePeers.contains("rsync") {
            contenders.append(Contender(label: "rsync daemon", make: { r.rsyncDaemon(tree, into: fresh.next(), work: w) },
                                        missing: Self.need(["rsync"])))
        }
        let trials = race(name, bytes: bytes, contenders, beforeEach: beforeEach)
        fresh.finish()
        return rows(name, trials, goals: goals) + rssRows(name, trials)
    }

    /// One big page-cached file into a file (tmpfs or wherever `--work`
    /// is) and into memory, against socat, nc and iperf3; with ft
    /// encrypted by each cipher, and sealing's own cost beside `--io copy`.
    func bigFile(_ src: String, _ dst: String, size: UInt64, pinned: Bool, into report: inout BenchReport) {
        let r = recipes
        let tag = pinned ? " (pinned)" : ""
        // Pinned: two one-core hosts, where CPU on each side sets the pace.
        let wallGoal = pinned ? 0.9 : 0.8
        if options.workloads.contains("file") {
            let name = "\(Sizes.format(size)) file → file\(tag)"
            let trials = race(name, bytes: size, pinned: pinned, [
                Contender(label: "ft", make: { r.ftFile(src, bytes: size, sink: .file(dst)) }),
                Contender(label: "socat -b 1M", make: { r.socat(src, bytes: size, sink: .file(dst)) }, missing: Self.need(["socat"])),
                Contender(label: "nc", make: { r.nc(src, bytes: size, sink: .file(dst)) }, missing: Self.need(["nc"])),
            ])
            report.comparisons += rows(name, trials, goals: ["socat -b 1M": wallGoal])
            if pinned { report.comparisons += cpuRows(name, trials, peer: "socat -b 1M", goal: 0.9) }
            report.throughput += trials.map { ThroughputCell(tool: $0.label + tag, io: "default", chunk: nil, streams: 1, sink: "file", trial: $0.trial) }
        }
        guard options.workloads.contains("memory") else { return }
        let name = "\(Sizes.format(size)) file → memory\(tag)"
        let trials = race(name, bytes: size, pinned: pinned, [
            Contender(label: "ft", make: { r.ftFile(src, bytes: size, sink: .null) }),
            Contender(label: "ft --no-verify", make: { r.ftFile(src, bytes: size, sink: .null, verify: false) }),
            Contender(label: "ft --io sendfile", make: { r.ftFile(src, bytes: size, sink: .null, io: "sendfile") }),
            Contender(label: "ft --encrypt", make: { r.ftFile(src, bytes: size, sink: .null, encrypt: true) }),
            Contender(label: "ft --encrypt chacha", make: { r.ftFile(src, bytes: size, sink: .null, encrypt: true, cipher: "chacha20-poly1305") }),
            Contender(label: "socat -b 1M", make: { r.socat(src, bytes: size, sink: .null) }, missing: Self.need(["socat"])),
            Contender(label: "nc", make: { r.nc(src, bytes: size, sink: .null) }, missing: Self.need(["nc"])),
            Contender(label: "iperf3 -F -Z", make: { r.iperf3File(src, bytes: size) }, missing: Self.need(["iperf3"])),
        ])
        // The goal into memory was set before the pinned one (0.6 unpinned).
        report.comparisons += rows(name, trials, goals: ["socat -b 1M": pinned ? 0.9 : 0.6])
        report.comparisons += cpuRows(name, trials, peer: "socat -b 1M", goal: pinned ? 0.9 : 0.5)
        report.comparisons += encryptionRows(name, trials)
        report.throughput += trials.map { ThroughputCell(tool: $0.label + tag, io: "default", chunk: nil, streams: 1, sink: "null", trial: $0.trial) }
        for t in trials {
            if let rate = t.trial.gigabytesPerSecond { report.references.append((t.label + tag, rate)) }
        }
    }

    /// `--encrypt` against the same push in the clear (goal: ≥ 0.8 × its
    /// throughput, so ≤ 1.25 × its wall time), and what sealing costs the
    /// sender per GiB over that push, whose default path (copy, verified)
    /// moves the bytes through memory the same way (goal ≤ 0.35 CPU-s).
    func encryptionRows(_ workload: String, _ entries: [Entry]) -> [Comparison] {
        func trial(_ label: String) -> Trial? { entries.first { $0.label == label && !$0.trial.good.isEmpty }?.trial }
        guard let plain = trial("ft") else { return [] }
        var out: [Comparison] = []
        for label in ["ft --encrypt", "ft --encrypt chacha"] {
            guard let sealed = trial(label) else { continue }
            out.append(Comparison(workload: "\(workload) (\(label))", metric: "wall s", peer: "ft", ftValue: sealed.medianWall,
                                  peerValue: plain.medianWall, goal: 1.25, status: .measured))
            if let a = sealed.cpuPerGiB(sender: true), let b = plain.cpuPerGiB(sender: true) {
                out.append(Comparison(workload: "\(workload) (\(label))", metric: "sealing cpu s/GiB, sender", peer: "(limit)",
                                      ftValue: max(0, a - b), peerValue: 0.35, goal: 1.0, status: .measured))
            }
        }
        return out
    }

    /// Peak RSS of each side of ft, next to the 32 MiB the project allows.
    func rssRows(_ workload: String, _ entries: [Entry]) -> [Comparison] {
        guard let f = entries.first(where: { $0.label == "ft" }), !f.trial.good.isEmpty else { return [] }
        let send = f.trial.good.map(\.senderRSSKiB).max() ?? 0
        let recv = f.trial.good.map(\.receiverRSSKiB).max() ?? 0
        return [
            Comparison(workload: workload, metric: "peak RSS MiB, sender", peer: "(limit)", ftValue: Double(send) / 1024,
                       peerValue: 32, goal: 1.0, status: .measured),
            Comparison(workload: workload, metric: "peak RSS MiB, receiver", peer: "(limit)", ftValue: Double(recv) / 1024,
                       peerValue: 32, goal: 1.0, status: .measured),
        ]
    }

    struct Entry {
        var label: String
        var trial: Trial
        var missing: String?
    }

    /// Runs every available contender `repeats` times, rotating the order
    /// each round so no tool always runs first (or right after a heavy one).
    func race(_ workload: String, bytes: UInt64, pinned: Bool? = nil, _ contenders: [Contender],
              beforeEach: (() -> Void)? = nil) -> [Entry] {
        var bench = bench
        if let pinned { bench.pin = pinned }
        var entries = contenders.map { Entry(label: $0.label, trial: Trial(label: $0.label, bytes: bytes), missing: $0.missing) }
        let runnable = contenders.indices.filter { contenders[$0].missing == nil }
        for round in 0..<options.repeats {
            for k in runnable.indices {
                let i = runnable[(k + round) % runnable.count]
                progress("compare: \(workload): round \(round + 1)/\(options.repeats), \(contenders[i].label)")
                // Made first: a run's directory is cleared before its clock starts.
                let command = contenders[i].make()
                beforeEach?()
                entries[i].trial.runs.append(bench.measure(command))
            }
        }
        return entries
    }

    /// ft (and ft variants) against each peer: wall-time medians and ratios.
    func rows(_ workload: String, _ entries: [Entry], goals: [String: Double]) -> [Comparison] {
        let fts = entries.filter { $0.label.hasPrefix("ft") }
        let peers = entries.filter { !$0.label.hasPrefix("ft") }
        var out: [Comparison] = []
        for f in fts {
            for p in peers {
                var c = Comparison(workload: workload, metric: "wall s", peer: p.label, ftValue: f.trial.medianWall,
                                   peerValue: p.trial.medianWall, goal: f.label == "ft" ? goals[p.label] : nil, status: .measured)
                if f.label != "ft" { c.workload += " (\(f.label))" }
                if let why = p.missing {
                    c.status = .skipped(why)
                } else if let why = (p.trial.good.isEmpty ? p.trial.failures.first : nil) ?? (f.trial.good.isEmpty ? f.trial.failures.first : nil) {
                    c.status = .failed(why)
                }
                out.append(c)
            }
        }
        return out
    }

    func cpuRows(_ workload: String, _ entries: [Entry], peer: String, goal: Double) -> [Comparison] {
        guard let f = entries.first(where: { $0.label == "ft" }), let p = entries.first(where: { $0.label == peer }) else { return [] }
        var c = Comparison(workload: workload, metric: "cpu s", peer: peer, ftValue: f.trial.medianCPU, peerValue: p.trial.medianCPU,
                           goal: goal, status: .measured)
        if let why = p.missing { c.status = .skipped(why) }
        return [c]
    }

    func latency(_ report: inout BenchReport) -> [LatencyResult] {
        var results: [LatencyResult] = []
        let secs = options.latencySeconds
        let m = options.messageBytes
        for udp in [false, true] {
            let proto = udp ? "udp" : "tcp"
            progress("compare: \(proto) ping-pong through the engine, \(secs) s")
            let mine: LatencyResult?
            do {
                mine = try EnginePingPong.run(udp: udp, messageBytes: m, seconds: secs, engine: options.engine, logger: logger)
            } catch {
                mine = nil
                report.comparisons.append(Comparison(workload: "\(proto) ping-pong \(m) B", metric: "p50 µs", peer: "sockperf",
                                                     status: .failed(error.description)))
            }
            var theirs: LatencyResult?
            var why: Comparison.Status = .measured
            if let missing = Self.need(["sockperf"]) {
                why = .skipped(missing)
            } else {
                progress("compare: sockperf \(proto) ping-pong, \(secs) s")
                do {
                    theirs = try Sockperf.run(udp: udp, messageBytes: m, seconds: secs, work: options.work, timeoutSeconds: secs + 30)
                } catch {
                    why = .failed(error.description)
                }
            }
            if let mine { results.append(mine) }
            if let theirs { results.append(theirs) }
            if mine != nil || theirs != nil {
                report.comparisons += latencyRows("\(proto) ping-pong \(m) B", mine, theirs, peer: "sockperf \(proto) --full-rtt",
                                                  goals: (1.1, 1.2), status: why)
            }
            if !udp {
                progress("compare: a line through an ft chat room, \(secs) s")
                do {
                    let room = try ChatRoomLatency.run(ft: recipes.ft, seconds: secs, engine: options.engine)
                    results.append(room)
                    report.comparisons += latencyRows("chat room line (client → room → client)", room, theirs,
                                                      peer: "sockperf tcp --full-rtt", goals: (1.5, nil), status: why)
                } catch {
                    report.comparisons.append(Comparison(workload: "chat room line", metric: "p50 µs", peer: "sockperf tcp",
                                                         status: .failed(error.description)))
                }
            }
        }
        return results
    }

    func latencyRows(_ workload: String, _ mine: LatencyResult?, _ theirs: LatencyResult?, peer: String,
                     goals: (Double?, Double?), status: Comparison.Status) -> [Comparison] {
        func us(_ v: UInt64?) -> Double? { v.map { Double($0) / 1000 } }
        return [
            Comparison(workload: workload, metric: "p50 µs", peer: peer, ftValue: us(mine?.p50), peerValue: us(theirs?.p50),
                       goal: goals.0, status: status),
            Comparison(workload: workload, metric: "p99 µs", peer: peer, ftValue: us(mine?.p99), peerValue: us(theirs?.p99),
                       goal: goals.1, status: status),
        ]
    }
}

/// A new empty directory per run, numbered. On tmpfs the previous run's
/// directory is removed before the next one is made (outside the timing);
/// elsewhere every run's tree stays until the end: deleting 10,000 inodes
/// between runs makes ext4 skip "recently deleted" inodes on the next
/// creates (minutes long), which once made every tool 10× slower.
final class RunDirectories {
    private let parent: String
    private let removesAsItGoes: Bool
    private var n = 0

    init(under parent: String) {
        self.parent = parent
        mkdir(parent, 0o755)
        removesAsItGoes = isTmpfs(parent)
    }

    func next() -> String {
        if removesAsItGoes, n > 0 { removeTree(parent + "/run\(n)") }
        n += 1
        let dir = parent + "/run\(n)"
        mkdir(dir, 0o755)
        return dir
    }

    /// Removes every run's directory.
    func finish() {
        for k in 1...max(n, 1) { removeTree(parent + "/run\(k)") }
    }
}

func isTmpfs(_ path: String) -> Bool {
    ft_filesystem_type(path) == 0x0102_1994
}
