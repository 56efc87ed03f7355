import FTWire

/// Byte counts as people write and read them.
package enum Sizes {
    /// "4M", "256K", "1G", "1.5GiB", "4096": binary multiples (K = 1024).
    package static func parse(_ text: String) -> UInt64? {
        var s = Substring(text.trimmed)
        guard !s.isEmpty else { return nil }
        let lower = s.lowercased()
        var mult: UInt64 = 1
        for (suffix, m) in [("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
                            ("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40),
                            ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("b", 1)] as [(String, UInt64)] {
            if lower.hasSuffix(suffix) {
                mult = m
                s = s.dropLast(suffix.count)
                break
            }
        }
        if let whole = UInt64(s) {
            let (v, o) = whole.multipliedReportingOverflow(by: mult)
            return o ? nil : v
        }
        guard let d = Double(s), d >= 0, d.isFinite, d * Double(mult) < 1.8e19 else { return nil }
        return UInt64(d * Double(mult))
    }

    /// "1.5 GiB", "812 B".
    package static func format(_ n: UInt64) -> String { ByteCount.format(n) }

    /// Decimal megabytes per second, as network people read rates.
    /// In the units sizes and `--limit` use (KiB, MiB, GiB: powers of
    /// 1024), so `--limit 16M` shows as 16.0 MiB/s.
    package static func rate(_ bytesPerSecond: Double) -> String {
        if bytesPerSecond >= Double(1 << 30) { return fixed(bytesPerSecond / Double(1 << 30), 2) + " GiB/s" }
        return fixed(bytesPerSecond / Double(1 << 20), 1) + " MiB/s"
    }

    package static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(seconds.rounded())
        if s >= 3600 { return "\(s / 3600):\(pad2((s % 3600) / 60)):\(pad2(s % 60))" }
        return "\(s / 60):\(pad2(s % 60))"
    }

    package static func fixed(_ v: Double, _ digits: Int) -> String { ByteCount.fixed(v, digits) }

    static func pad2(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
}
