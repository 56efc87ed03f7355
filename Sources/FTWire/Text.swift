/// Small text helpers every room uses for messages.
public enum ByteCount {
    /// Binary units with one decimal: "812 B", "1.5 GiB".
    public static func format(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024, u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : fixed(v, 1) + " " + units[u]
    }

    /// `v` with exactly `digits` decimals, without Foundation.
    public static func fixed(_ v: Double, _ digits: Int) -> String {
        var p = 1.0
        for _ in 0..<digits { p *= 10 }
        let scaled = (v * p).rounded()
        let whole = Int64(scaled / p)
        var frac = String(Int64(abs(scaled)) % Int64(p))
        while frac.count < digits { frac = "0" + frac }
        let sign = scaled < 0 && whole == 0 ? "-" : ""
        return digits == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(frac)"
    }
}

extension StringProtocol {
    /// Without leading and trailing whitespace.
    public var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
