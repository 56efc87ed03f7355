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

/// Everything one ftbench invocation measured; `document` is what --json
/// writes (schema v1, docs/ftbench-json.md).
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

    /// The report as ftbench writes it with --json.
    package var json: String { JSONLineEncoder().line(document) }

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
