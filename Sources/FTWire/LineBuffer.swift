/// Splits a byte stream into lines for chat, with a hard cap on line
/// length: an overlong line is cut at the cap and the rest of it, up to the
/// next newline, is dropped. Memory stays bounded whatever a peer sends.
/// "\n" ends a line; a "\r" before it is removed (CRLF peers).
public struct LineBuffer: Sendable {
    /// Longest line kept, in bytes (documented in `ft chat --help`).
    public static let defaultCap = 64 << 10

    public enum Item: Equatable, Sendable {
        case line([UInt8])
        /// The first `cap` bytes of a line that was longer; the rest is dropped.
        case truncated([UInt8])
    }

    public let cap: Int
    private var pending: [UInt8] = []
    private var discarding = false

    public init(cap: Int = LineBuffer.defaultCap) {
        precondition(cap > 0)
        self.cap = cap
    }

    /// Bytes held while waiting for a newline (never more than `cap`).
    public var pendingCount: Int { pending.count }

    public mutating func append<C: Collection>(_ bytes: C) -> [Item] where C.Element == UInt8 {
        var out: [Item] = []
        for b in bytes {
            if b == 0x0A {
                if discarding {
                    discarding = false
                } else {
                    if pending.last == 0x0D { pending.removeLast() }
                    out.append(.line(pending))
                }
                pending.removeAll(keepingCapacity: true)
                continue
            }
            if discarding { continue }
            pending.append(b)
            if pending.count >= cap {
                // Never cut a character in half.
                let keep = UTF8Scan.boundary(in: pending, end: pending.count)
                out.append(.truncated(Array(pending[..<keep])))
                pending.removeAll(keepingCapacity: false)
                discarding = true
            }
        }
        return out
    }

    /// End of stream: a last line without a newline still counts.
    public mutating func finish() -> Item? {
        defer {
            pending.removeAll()
            discarding = false
        }
        guard !pending.isEmpty, !discarding else { return nil }
        if pending.last == 0x0D { pending.removeLast() }
        return .line(pending)
    }
}
