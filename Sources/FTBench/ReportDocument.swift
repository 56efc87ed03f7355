import FTFrontEnd

/// The JSON ftbench writes with --json: schema v1, field by field as
/// docs/ftbench-json.md describes it. Encoded by the same encoder as ft's
/// NDJSON events, so both programs write numbers, nulls and key order
/// alike.
package struct ReportDocument: Codable, Sendable {
    package var schema = "ftbench"
    package var version: Int
    package var mode: String
    package var command: [String]
    package var machine: Machine
    package var timeUnix: Int64
    package var throughput: [Throughput]
    package var latency: [Latency]
    package var comparisons: [Compared]

    enum CodingKeys: String, CodingKey {
        case schema, version, mode, command, machine
        case timeUnix = "time_unix"
        case throughput, latency, comparisons
    }

    package struct Machine: Codable, Sendable {
        package var cores: Int
        package var kernel: String
        package var cpu: String
        package var memoryBytes: UInt64
        package var hostname: String

        enum CodingKeys: String, CodingKey {
            case cores, kernel, cpu
            case memoryBytes = "memory_bytes"
            case hostname
        }
    }

    package struct Spread: Codable, Sendable {
        package var median: Double?
        package var min: Double?
        package var max: Double?
    }

    package struct PerSide<Value: Codable & Sendable>: Codable, Sendable {
        package var sender: Value
        package var receiver: Value
    }

    package struct RunRecord: Codable, Sendable {
        package var wallSeconds: Double
        package var senderCPUSeconds: Double
        package var receiverCPUSeconds: Double
        package var senderRSSKiB: Int
        package var receiverRSSKiB: Int
        package var timedOut: Bool
        package var failure: String?

        enum CodingKeys: String, CodingKey {
            case wallSeconds = "wall_seconds"
            case senderCPUSeconds = "sender_cpu_seconds"
            case receiverCPUSeconds = "receiver_cpu_seconds"
            case senderRSSKiB = "sender_rss_kib"
            case receiverRSSKiB = "receiver_rss_kib"
            case timedOut = "timed_out"
            case failure
        }
    }

    package struct Throughput: Codable, Sendable {
        package var tool: String
        package var io: String
        package var chunkBytes: UInt64?
        package var streams: Int
        package var sink: String
        package var bytes: UInt64?
        package var repeats: Int
        package var okRuns: Int
        package var timedOutRuns: Int
        package var wallSeconds: Spread
        package var gigabytesPerSecond: Double?
        package var gigabitsPerSecond: Double?
        package var cpuSecondsPerGiB: PerSide<Double?>
        package var peakRSSKiB: PerSide<Int>
        package var runs: [RunRecord]

        enum CodingKeys: String, CodingKey {
            case tool, io
            case chunkBytes = "chunk_bytes"
            case streams, sink, bytes
            case repeats = "repeat"
            case okRuns = "ok_runs"
            case timedOutRuns = "timed_out_runs"
            case wallSeconds = "wall_seconds"
            case gigabytesPerSecond = "gigabytes_per_second"
            case gigabitsPerSecond = "gigabits_per_second"
            case cpuSecondsPerGiB = "cpu_seconds_per_gib"
            case peakRSSKiB = "peak_rss_kib"
            case runs
        }
    }

    package struct Percentiles: Codable, Sendable {
        package var p50: UInt64
        package var p90: UInt64
        package var p99: UInt64
        package var p99_9: UInt64
        package var max: UInt64
    }

    /// One point of a latency CDF: `[nanoseconds, fraction]`.
    package struct CDFPoint: Codable, Sendable {
        package var nanoseconds: UInt64
        package var fraction: Double

        package func encode(to encoder: any Encoder) throws {
            var c = encoder.unkeyedContainer()
            try c.encode(nanoseconds)
            try c.encode(fraction)
        }

        package init(nanoseconds: UInt64, fraction: Double) {
            self.nanoseconds = nanoseconds
            self.fraction = fraction
        }

        package init(from decoder: any Decoder) throws {
            var c = try decoder.unkeyedContainer()
            nanoseconds = try c.decode(UInt64.self)
            fraction = try c.decode(Double.self)
        }
    }

    package struct Latency: Codable, Sendable {
        package var name: String
        package var messageBytes: Int
        package var samples: UInt64
        package var measures: String
        package var ns: Percentiles
        package var cdf: [CDFPoint]

        enum CodingKeys: String, CodingKey {
            case name
            case messageBytes = "message_bytes"
            case samples, measures, ns, cdf
        }
    }

    package struct Compared: Codable, Sendable {
        package var workload: String
        package var metric: String
        package var peer: String
        package var ft: Double?
        package var peerValue: Double?
        package var ratio: Double?
        package var goal: Double?
        package var status: String

        enum CodingKeys: String, CodingKey {
            case workload, metric, peer, ft
            case peerValue = "peer_value"
            case ratio, goal, status
        }
    }
}

extension BenchReport {
    package var document: ReportDocument {
        ReportDocument(
            version: Self.schemaVersion, mode: mode, command: command,
            machine: .init(cores: machine.cores, kernel: machine.kernel, cpu: machine.cpuModel,
                           memoryBytes: machine.memoryBytes, hostname: machine.hostname),
            timeUnix: startedUnix,
            throughput: throughput.map { c in
                let t = c.trial
                return .init(
                    tool: c.tool, io: c.io, chunkBytes: c.chunk, streams: c.streams, sink: c.sink, bytes: t.bytes,
                    repeats: t.runs.count, okRuns: t.good.count, timedOutRuns: t.timedOut,
                    wallSeconds: .init(median: t.medianWall, min: t.minWall, max: t.maxWall),
                    gigabytesPerSecond: t.gigabytesPerSecond, gigabitsPerSecond: t.gigabytesPerSecond.map { $0 * 8 },
                    cpuSecondsPerGiB: .init(sender: t.cpuPerGiB(sender: true), receiver: t.cpuPerGiB(sender: false)),
                    peakRSSKiB: .init(sender: t.peakSenderRSSKiB, receiver: t.peakReceiverRSSKiB),
                    runs: t.runs.map {
                        .init(wallSeconds: $0.wall, senderCPUSeconds: $0.senderCPU, receiverCPUSeconds: $0.receiverCPU,
                              senderRSSKiB: $0.senderRSSKiB, receiverRSSKiB: $0.receiverRSSKiB, timedOut: $0.timedOut,
                              failure: $0.failure)
                    })
            },
            latency: latency.map { l in
                .init(name: l.name, messageBytes: l.messageBytes, samples: l.samples, measures: l.measures,
                      ns: .init(p50: l.p50, p90: l.p90, p99: l.p99, p99_9: l.p999, max: l.max),
                      cdf: l.cdf.map { .init(nanoseconds: $0.0, fraction: $0.1) })
            },
            comparisons: comparisons.map { c in
                .init(workload: c.workload, metric: c.metric, peer: c.peer, ft: c.ftValue, peerValue: c.peerValue,
                      ratio: c.ratio, goal: c.goal, status: c.verdict)
            })
    }
}
