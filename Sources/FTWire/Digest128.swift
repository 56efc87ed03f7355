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

    /// 32 lowercase hex digits. Written into the string's own storage:
    /// `--json` writes one per file.
    public var hex: String {
        String(unsafeUninitializedCapacity: 32) { out in
            let digits: StaticString = "0123456789abcdef"
            let d = digits.utf8Start
            for i in 0..<16 {
                out[15 - i] = d[Int(high >> (4 * UInt64(i)) & 0xF)]
                out[31 - i] = d[Int(low >> (4 * UInt64(i)) & 0xF)]
            }
            return 32
        }
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
