import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// One measured transfer.
package struct Run: Sendable {
    /// From the sender's start until both sides exited (or, for a daemon
    /// receiver, until the sender exited).
    package var wall: Double
    package var senderCPU: Double
    package var receiverCPU: Double
    package var senderRSSKiB: Int
    package var receiverRSSKiB: Int
    package var timedOut: Bool
    /// Why the run does not count, if it does not.
    package var failure: String?

    package var ok: Bool { failure == nil && !timedOut }
}

/// How to move one workload with one tool: who listens, who sends.
package struct TransferCommand: Sendable {
    package var label: String
    /// Either argv or, for pipelines, a shell script.
    package var receiver: [String]
    package var receiverIsShell = false
    package var receiverStdout = "/dev/null"
    package var receiverPort: UInt16
    /// A daemon that keeps running after the transfer (rsync): stopped by
    /// us, and not part of the wall time.
    package var receiverPersists = false
    package var sender: [String]
    package var senderIsShell = false
    package var senderStdin = "/dev/null"
    /// What must exist afterwards with how many bytes (file sinks).
    package var expectFile: (path: String, bytes: UInt64)?
    /// Removed before each run (the previous run's output).
    package var cleanup: [String] = []
}

/// Runs transfer commands and measures them.
package struct Workbench: Sendable {
    package var timeoutSeconds: Double
    package var syncBeforeRuns: Bool
    /// Two one-core hosts on one machine: the receiver (and whatever it
    /// starts) on CPU 1, the sender on CPU 0.
    package var pin = false
    /// Where stderr of every participant goes, for post-mortems.
    package var log: String

    package init(timeoutSeconds: Double = 120, syncBeforeRuns: Bool = true, log: String = "/dev/null") {
        self.timeoutSeconds = timeoutSeconds
        self.syncBeforeRuns = syncBeforeRuns
        self.log = log
    }

    package func measure(_ t: TransferCommand) -> Run {
        var run = Run(wall: 0, senderCPU: 0, receiverCPU: 0, senderRSSKiB: 0, receiverRSSKiB: 0, timedOut: false)
        for path in t.cleanup { removeTree(path) }
        if syncBeforeRuns { sync() }
        let receiver: Spawned
        do {
            receiver = try Spawned(pinned(t.receiver, shell: t.receiverIsShell, cpu: 1), stdout: t.receiverStdout, stderr: log)
        } catch {
            run.failure = error.description
            return run
        }
        receiver.sample()
        guard Ports.waitListening(t.receiverPort, seconds: 10) else {
            receiver.signal(SIGKILL)
            _ = receiver.wait(timeoutSeconds: 5)
            run.failure = "\(t.receiver.first ?? "receiver") did not listen on \(t.receiverPort) within 10 s"
            return run
        }
        let start = monotonicNanoseconds()
        let sender: Spawned
        do {
            sender = try Spawned(pinned(t.sender, shell: t.senderIsShell, cpu: 0), stdin: t.senderStdin, stderr: log)
        } catch {
            receiver.signal(SIGKILL)
            _ = receiver.wait(timeoutSeconds: 5)
            run.failure = error.description
            return run
        }
        let s = sender.wait(timeoutSeconds: timeoutSeconds, sampling: [receiver])
        if t.receiverPersists {
            run.wall = Double(monotonicNanoseconds() - start) / 1e9
            receiver.signal(SIGTERM)
        }
        let left = max(1, timeoutSeconds - Double(monotonicNanoseconds() - start) / 1e9)
        let r = receiver.wait(timeoutSeconds: t.receiverPersists ? 10 : left)
        if !t.receiverPersists { run.wall = Double(monotonicNanoseconds() - start) / 1e9 }
        run.senderCPU = s.cpuSeconds
        run.receiverCPU = r.cpuSeconds
        run.senderRSSKiB = s.maxRSSKiB
        run.receiverRSSKiB = r.maxRSSKiB
        run.timedOut = s.timedOut || (r.timedOut && !t.receiverPersists)
        if run.timedOut {
            run.failure = "timed out after \(Int(timeoutSeconds)) s"
        } else if s.status != 0 {
            run.failure = "\(t.sender.first ?? "sender") exited \(s.status)"
        } else if r.status != 0, !t.receiverPersists {
            run.failure = "\(t.receiver.first ?? "receiver") exited \(r.status)"
        } else if let (path, bytes) = t.expectFile {
            var st = stat()
            if stat(path, &st) != 0 || UInt64(st.st_size) != bytes {
                run.failure = "\(path) holds \(stat(path, &st) == 0 ? UInt64(st.st_size) : 0) of \(bytes) bytes"
            }
        }
        return run
    }
}

extension Workbench {
    /// The argv to spawn: a script through /bin/sh, and under `taskset`
    /// when pinning (children inherit the CPU).
    func pinned(_ argv: [String], shell: Bool, cpu: Int) -> [String] {
        let command = shell ? ["/bin/sh", "-c", argv.joined(separator: " ")] : argv
        return pin ? ["taskset", "-c", String(cpu)] + command : command
    }

    /// Only the sender, against a receiver elsewhere (`ftbench serve`):
    /// receiver figures stay zero.
    package func measureSender(_ argv: [String]) -> Run {
        var run = Run(wall: 0, senderCPU: 0, receiverCPU: 0, senderRSSKiB: 0, receiverRSSKiB: 0, timedOut: false)
        let start = monotonicNanoseconds()
        let sender: Spawned
        do { sender = try Spawned(argv, stderr: log) } catch {
            run.failure = error.description
            return run
        }
        let s = sender.wait(timeoutSeconds: timeoutSeconds)
        run.wall = Double(monotonicNanoseconds() - start) / 1e9
        run.senderCPU = s.cpuSeconds
        run.senderRSSKiB = s.maxRSSKiB
        run.timedOut = s.timedOut
        if s.timedOut { run.failure = "timed out after \(Int(timeoutSeconds)) s" } else if s.status != 0 { run.failure = "ft send exited \(s.status)" }
        return run
    }
}

/// Summary of several runs of one tool on one workload.
package struct Trial: Sendable {
    package var label: String
    package var parameters: [(String, String)]
    package var runs: [Run]
    /// Bytes moved per run, for rates (nil for latency-like workloads).
    package var bytes: UInt64?

    package init(label: String, parameters: [(String, String)] = [], runs: [Run] = [], bytes: UInt64?) {
        self.label = label
        self.parameters = parameters
        self.runs = runs
        self.bytes = bytes
    }

    package var good: [Run] { runs.filter(\.ok) }
    package var failures: [String] { runs.compactMap(\.failure) }
    package var timedOut: Int { runs.filter(\.timedOut).count }

    package var medianWall: Double? { median(good.map(\.wall)) }
    package var minWall: Double? { good.map(\.wall).min() }
    package var maxWall: Double? { good.map(\.wall).max() }
    package var medianCPU: Double? { median(good.map { $0.senderCPU + $0.receiverCPU }) }
    package var peakSenderRSSKiB: Int { runs.map(\.senderRSSKiB).max() ?? 0 }
    package var peakReceiverRSSKiB: Int { runs.map(\.receiverRSSKiB).max() ?? 0 }

    /// Decimal gigabytes per second at the median.
    package var gigabytesPerSecond: Double? {
        guard let bytes, let w = medianWall, w > 0 else { return nil }
        return Double(bytes) / w / 1e9
    }

    /// CPU seconds per GiB moved, per side.
    package func cpuPerGiB(sender: Bool) -> Double? {
        guard let bytes, bytes > 0 else { return nil }
        let values = good.map { sender ? $0.senderCPU : $0.receiverCPU }
        return median(values).map { $0 / (Double(bytes) / Double(1 << 30)) }
    }
}

package func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let s = values.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if st.st_mode & S_IFMT == S_IFDIR {
        if let d = opendir(path) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != ".", name != ".." { removeTree(path + "/" + name) }
            }
            closedir(d)
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}
