import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// sockperf ping-pong, the latency reference. Run with --full-rtt so its
/// numbers are round trips, like ours (by default it prints half of one).
package enum Sockperf {
    package static func run(udp: Bool, messageBytes: Int, seconds: Double, work: String, timeoutSeconds: Double) throws(IOError) -> LatencyResult {
        let port = Ports.free()
        var server = ["sockperf", "sr", "-i", "127.0.0.1", "-p", "\(port)"]
        if !udp { server.insert("--tcp", at: 2) }
        let sr = try Spawned(server)
        defer {
            sr.signal(SIGKILL)
            _ = sr.wait(timeoutSeconds: 5)
        }
        guard Ports.waitListening(port, udp: udp) else { throw IOError(.timedOut, "start sockperf sr on port", "\(port)") }
        let out = work + "/sockperf-\(port).txt"
        var client = ["sockperf", "pp", "-i", "127.0.0.1", "-p", "\(port)", "-t", "\(max(1, Int(seconds.rounded())))",
                      "-m", "\(messageBytes)", "--full-rtt"]
        if !udp { client.insert("--tcp", at: 2) }
        let pp = try Spawned(client, stdout: out)
        let exit = pp.wait(timeoutSeconds: timeoutSeconds)
        guard !exit.timedOut else { throw IOError(.timedOut, "sockperf pp", "\(Int(timeoutSeconds)) s") }
        guard let text = readText(out), let parsed = parse(text) else {
            throw IOError(.ioError, "read sockperf's percentiles from", out)
        }
        return LatencyResult(name: "sockperf \(udp ? "udp" : "tcp")", messageBytes: messageBytes, samples: parsed.count,
                             microseconds: parsed.percentiles, measures: "round trip")
    }

    /// Percentiles (µs) and the observation count from `sockperf pp` output.
    package static func parse(_ text: String) -> (percentiles: [Double: Double], count: UInt64)? {
        var p: [Double: Double] = [:]
        var count: UInt64 = 0
        for line in text.split(separator: "\n") {
            // Strip the ANSI colouring sockperf adds.
            let clean = String(line).replacingANSI()
            // "Total N observations; each percentile contains ..." first: it
            // also holds the word "percentile".
            if let r = clean.range(of: "Total ") {
                count = UInt64(clean[r.upperBound...].prefix { $0.isNumber }) ?? 0
            } else if let r = clean.range(of: "percentile ") {
                let rest = clean[r.upperBound...].split(separator: "=")
                if rest.count == 2, let q = Double(rest[0].trimmed), let v = Double(rest[1].trimmed) { p[q] = v }
            } else if clean.contains("<MAX> observation"), let v = clean.split(separator: "=").last.flatMap({ Double($0.trimmed) }) {
                p[100] = v
            } else if clean.contains("<MIN> observation"), let v = clean.split(separator: "=").last.flatMap({ Double($0.trimmed) }) {
                p[0] = v
            }
        }
        return p[50] == nil ? nil : (p, count)
    }
}

extension String {
    func replacingANSI() -> String {
        var out = ""
        var skipping = false
        for c in unicodeScalars {
            if c == "\u{1B}" { skipping = true; continue }
            if skipping { if ("a"..."z").contains(c) || ("A"..."Z").contains(c) { skipping = false }; continue }
            out.unicodeScalars.append(c)
        }
        return out
    }

    func range(of needle: String) -> Range<String.Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}
