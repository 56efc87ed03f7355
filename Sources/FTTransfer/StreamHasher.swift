import CXXHash
import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Streaming xxh3-128. One state per file being hashed, reused across files
/// with `reset()`; `update` allocates nothing.
public final class StreamHasher {
    private let state: OpaquePointer

    public init() {
        guard let s = ft_xxh3_new() else { fatalError("out of memory creating an xxh3 state") }
        state = s
    }

    deinit { ft_xxh3_free(state) }

    /// "avx2" or "sse2": the code that hashes on this CPU.
    public static var implementation: String { String(cString: ft_xxh3_implementation()) }

    public func reset() { ft_xxh3_reset(state) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        ft_xxh3_update(state, base, bytes.count)
    }

    public func digest() -> Digest128 {
        var d = Digest128.zero
        ft_xxh3_digest(state, &d.high, &d.low)
        return d
    }

    /// One-shot hash of a buffer.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest128 {
        var d = Digest128.zero
        ft_xxh3_oneshot(bytes.baseAddress, bytes.count, &d.high, &d.low)
        return d
    }

    /// Feeds `length` bytes of `fd` from `offset`, read from the page cache
    /// through a mapped window: no copy (profiling showed pread's copy
    /// costing more than the hash), resident memory bounded by the window,
    /// and a file truncated underneath is an error, not a SIGBUS.
    public func update(fd: CInt, offset: UInt64, length: UInt64) throws(IOError) {
        let r = ft_xxh3_update_file(state, fd, offset, length, Self.window)
        if r == -EIO { throw IOError(.ioError, "read for hashing (the file shrank while being read)") }
        if r < 0 { throw IOError(Errno(rawValue: -r), "map for hashing") }
    }

    /// Mapped window: big enough to amortise mmap, small enough to keep
    /// resident memory well under the 32 MiB budget.
    static let window = 4 << 20
}

/// Byte ranges received for one file, merged as they arrive. Chunks may come
/// in any order (resume, parallel streams); `contiguous` is how far from 0
/// everything has arrived, which is how far the hash can advance.
public struct ReceivedRanges: Equatable, Sendable {
    /// Sorted, disjoint, non-adjacent half-open ranges.
    public private(set) var ranges: [Range<UInt64>] = []

    public init() {}

    public var contiguous: UInt64 {
        guard let first = ranges.first, first.lowerBound == 0 else { return 0 }
        return first.upperBound
    }

    public var total: UInt64 { ranges.reduce(0) { $0 + UInt64($1.count) } }

    /// Adds a range; false if it overlaps bytes already received.
    public mutating func insert(_ r: Range<UInt64>) -> Bool {
        guard !r.isEmpty else { return true }
        // First range ending after r starts; the one before it may touch r.
        var i = ranges.count
        var lo = 0
        var hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].upperBound <= r.lowerBound { lo = mid + 1 } else { hi = mid }
        }
        i = lo
        if i < ranges.count, ranges[i].overlaps(r) { return false }
        var merged = r
        var removeFrom = i
        var removeTo = i
        if i > 0, ranges[i - 1].upperBound == r.lowerBound {
            merged = ranges[i - 1].lowerBound..<merged.upperBound
            removeFrom = i - 1
        }
        if i < ranges.count, ranges[i].lowerBound == r.upperBound {
            merged = merged.lowerBound..<ranges[i].upperBound
            removeTo = i + 1
        }
        ranges.replaceSubrange(removeFrom..<removeTo, with: [merged])
        return true
    }

    /// Whether every byte of `r` is received.
    public func contains(_ r: Range<UInt64>) -> Bool {
        r.isEmpty || ranges.contains { $0.lowerBound <= r.lowerBound && r.upperBound <= $0.upperBound }
    }

    /// Adds a range, merging with whatever it overlaps or touches.
    public mutating func formUnion(_ r: Range<UInt64>) {
        guard !r.isEmpty else { return }
        var merged = r
        var kept: [Range<UInt64>] = []
        kept.reserveCapacity(ranges.count + 1)
        for x in ranges {
            if x.upperBound < merged.lowerBound || x.lowerBound > merged.upperBound {
                kept.append(x)
            } else {
                merged = min(x.lowerBound, merged.lowerBound)..<max(x.upperBound, merged.upperBound)
            }
        }
        kept.append(merged)
        kept.sort { $0.lowerBound < $1.lowerBound }
        ranges = kept
    }

    /// Takes a range out again (its bytes are to be received anew).
    public mutating func remove(_ r: Range<UInt64>) {
        guard !r.isEmpty else { return }
        var kept: [Range<UInt64>] = []
        kept.reserveCapacity(ranges.count + 1)
        for x in ranges {
            if x.upperBound <= r.lowerBound || x.lowerBound >= r.upperBound {
                kept.append(x)
                continue
            }
            if x.lowerBound < r.lowerBound { kept.append(x.lowerBound..<r.lowerBound) }
            if x.upperBound > r.upperBound { kept.append(r.upperBound..<x.upperBound) }
        }
        ranges = kept
    }
}
