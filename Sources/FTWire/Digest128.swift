/// A 128-bit digest (xxh3-128 in the protocol). Stored and sent in the
/// canonical big-endian order, so `hex` matches `xxh128sum`.
public struct Digest128: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static let zero = Digest128(high: 0, low: 0)

    public var hex: String {
        func pad(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        return pad(high) + pad(low)
    }

    public var description: String { hex }

    /// Constant-time comparison: a digest can stand in for a secret.
    public func constantTimeEquals(_ other: Digest128) -> Bool {
        ((high ^ other.high) | (low ^ other.low)) == 0
    }

    func write(to w: inout WireWriter) {
        w.u64(high)
        w.u64(low)
    }

    static func read(from r: inout WireReader, _ field: String) throws(WireError) -> Digest128 {
        let h = try r.u64(field)
        let l = try r.u64(field)
        return Digest128(high: h, low: l)
    }
}
