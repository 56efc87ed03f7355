import FTFrontEnd
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// One cell of a throughput sweep.
package struct ThroughputCell: Sendable {
    package var tool: String
    package var io: String
    package var chunk: UInt64?
    package var streams: Int
    package var sink: String
    package var trial: Trial

    package init(tool: String, io: String, chunk: UInt64?, streams: Int, sink: String, trial: Trial) {
        self.tool = tool
        self.io = io
        self.chunk = chunk
        self.streams = streams
        self.sink = sink
        self.trial = trial
    }
}

/// One line of a comparison table: ft against one peer on one workload.
package struct Comparison: Sendable {
    package enum Status: Sendable, Equatable {
        case measured
        case skipped(String)
        case failed(String)
    }

    package var workload: String
    /// "wall s (median)", "p50 µs", ...
    package var metric: String
    package var peer: String
    package var ftValue: Double?
    package var peerValue: Double?
    /// ft / peer; goals are upper bounds on it.
    package var goal: Double?
    package var status: Status

    package var ratio: Double? {
        guard let f = ftValue, let p = peerValue, p > 0 else { return nil }
        return f / p
    }

    package var verdict: String {
        switch status {
        case .skipped(let why): return "skipped: \(why)"
        case .failed(let why): return "failed: \(why)"
        case .measured:
            guard let r = ratio else { return "no result" }
            guard let g = goal else { return "measured" }
            return r <= g ? "goal met" : "goal missed"
        }
    }
}

/// Everything one ftbench invocation measured. `json` documents schema v1
/// (docs/ftbench-json.md).
package struct BenchReport: Sendable {
    package static let schemaVersion = 1

    package var mode: String
    package var command: [String]
    package var machine = MachineInfo.current()
    package var startedUnix = Int64(time(nil))
    package var throughput: [ThroughputCell] = []
    package var latency: [LatencyResult] = []
    package var comparisons: [Comparison] = []
    /// Reference throughputs drawn as horizontal lines (peers, GB/s).
    package var references: [(String, Double)] = []

    package init(mode: String, command: [String]) {
        self.mode = mode
        self.command = command
    }

    package var json: JSON {
        .object([
            ("schema", "ftbench"), ("version", .int(Int64(Self.schemaVersion))), ("mode", .string(mode)),
            ("command", .array(command.map { .string($0) })),
            ("machine", .object([
                ("cores", .int(Int64(machine.cores))), ("kernel", .string(machine.kernel)), ("cpu", .string(machine.cpuModel)),
                ("memory_bytes", .uint(machine.memoryBytes)), ("hostname", .string(machine.hostname)),
            ])),
            ("time_unix", .int(startedUnix)),
            ("throughput", .array(throughput.map(Self.json))),
            ("latency", .array(latency.map(Self.json))),
            ("comparisons", .array(comparisons.map(Self.json))),
        ])
    }

    static func json(_ c: ThroughputCell) -> JSON {
        let t = c.trial
        return .object([
            ("tool", .string(c.tool)), ("io", .string(c.io)), ("chunk_bytes", .opt(c.chunk)),
            ("streams", .int(Int64(c.streams))), ("sink", .string(c.sink)), ("bytes", .opt(t.bytes)),
            ("repeat", .int(Int64(t.runs.count))), ("ok_runs", .int(Int64(t.good.count))), ("timed_out_runs", .int(Int64(t.timedOut))),
            ("wall_seconds", .object([("median", .opt(t.medianWall)), ("min", .opt(t.minWall)), ("max", .opt(t.maxWall))])),
            ("gigabytes_per_second", .opt(t.gigabytesPerSecond)),
            ("gigabits_per_second", .opt(t.gigabytesPerSecond.map { $0 * 8 })),
            ("cpu_seconds_per_gib", .object([("sender", .opt(t.cpuPerGiB(sender: true))), ("receiver", .opt(t.cpuPerGiB(sender: false)))])),
            ("peak_rss_kib", .object([("sender", .int(Int64(t.peakSenderRSSKiB))), ("receiver", .int(Int64(t.peakReceiverRSSKiB)))])),
            ("runs", .array(t.runs.map { r in
                .object([
                    ("wall_seconds", .double(r.wall)), ("sender_cpu_seconds", .double(r.senderCPU)),
                    ("receiver_cpu_seconds", .double(r.receiverCPU)), ("sender_rss_kib", .int(Int64(r.senderRSSKiB))),
                    ("receiver_rss_kib", .int(Int64(r.receiverRSSKiB))), ("timed_out", .bool(r.timedOut)),
                    ("failure", .opt(r.failure)),
                ])
            })),
        ])
    }

    static func json(_ l: LatencyResult) -> JSON {
        .object([
            ("name", .string(l.name)), ("message_bytes", .int(Int64(l.messageBytes))), ("samples", .uint(l.samples)),
            ("measures", .string(l.measures)),
            ("ns", .object([("p50", .uint(l.p50)), ("p90", .uint(l.p90)), ("p99", .uint(l.p99)), ("p99_9", .uint(l.p999)), ("max", .uint(l.max))])),
            ("cdf", .array(l.cdf.map { .array([.uint($0.0), .double($0.1)]) })),
        ])
    }

    static func json(_ c: Comparison) -> JSON {
        .object([
            ("workload", .string(c.workload)), ("metric", .string(c.metric)), ("peer", .string(c.peer)),
            ("ft", .opt(c.ftValue)), ("peer_value", .opt(c.peerValue)), ("ratio", .opt(c.ratio)),
            ("goal", .opt(c.goal)), ("status", .string(c.verdict)),
        ])
    }

    // MARK: Tables

    package var text: String {
        var out = "ftbench \(mode) on \(machine.cores) cores, \(machine.cpuModel), kernel \(machine.kernel)\n"
        if !throughput.isEmpty {
            var rows = [["tool", "io", "chunk", "streams", "sink", "runs", "wall s (med/min/max)", "GB/s", "Gbit/s", "cpu s/GiB snd", "rcv", "rss MiB snd", "rcv"]]
            for c in throughput {
                let t = c.trial
                func f(_ v: Double?, _ d: Int = 2) -> String { v.map { Sizes.fixed($0, d) } ?? "-" }
                let wall = t.medianWall == nil ? (t.timedOut > 0 ? "timeout" : "failed")
                    : "\(f(t.medianWall, 3))/\(f(t.minWall, 3))/\(f(t.maxWall, 3))"
                rows.append([c.tool, c.io, c.chunk.map { Sizes.format($0) } ?? "-", "\(c.streams)", c.sink, "\(t.good.count)/\(t.runs.count)",
                             wall, f(t.gigabytesPerSecond), f(t.gigabytesPerSecond.map { $0 * 8 }, 1),
                             f(t.cpuPerGiB(sender: true)), f(t.cpuPerGiB(sender: false)),
                             f(Double(t.peakSenderRSSKiB) / 1024, 1), f(Double(t.peakReceiverRSSKiB) / 1024, 1)])
            }
            out += "\n" + table(rows)
        }
        if !latency.isEmpty {
            var rows = [["path", "bytes", "samples", "p50 µs", "p90", "p99", "p99.9", "max", "measures"]]
            for l in latency {
                func us(_ ns: UInt64) -> String { Sizes.fixed(Double(ns) / 1000, 1) }
                rows.append([l.name, "\(l.messageBytes)", "\(l.samples)", us(l.p50), us(l.p90), us(l.p99), us(l.p999), us(l.max), l.measures])
            }
            out += "\n" + table(rows)
        }
        if !comparisons.isEmpty {
            var rows = [["workload", "metric", "peer", "ft", "peer", "ft/peer", "goal", "verdict"]]
            for c in comparisons {
                func f(_ v: Double?) -> String { v.map { Sizes.fixed($0, 3) } ?? "-" }
                rows.append([c.workload, c.metric, c.peer, f(c.ftValue), f(c.peerValue), c.ratio.map { Sizes.fixed($0, 2) } ?? "-",
                             c.goal.map { "≤ " + Sizes.fixed($0, 2) } ?? "-", c.verdict])
            }
            out += "\n" + table(rows)
        }
        return out
    }
}

/// Left-aligned text columns.
func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = [Int](repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    return rows.map { r in
        r.enumerated().map { i, c in c + String(repeating: " ", count: widths[i] - c.count) }.joined(separator: "  ")
            .trimmedTrailing()
    }.joined(separator: "\n") + "\n"
}

extension String {
    func trimmedTrailing() -> String {
        var s = Substring(self)
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
