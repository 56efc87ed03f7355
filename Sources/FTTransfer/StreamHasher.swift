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
        guard let s = XXH3_createState() else { fatalError("out of memory creating an xxh3 state") }
        state = s
        XXH3_128bits_reset(state)
    }

    deinit { XXH3_freeState(state) }

    public func reset() { XXH3_128bits_reset(state) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        XXH3_128bits_update(state, base, bytes.count)
    }

    public func digest() -> Digest128 {
        let h = XXH3_128bits_digest(state)
        return Digest128(high: h.high64, low: h.low64)
    }

    /// One-shot hash of a buffer.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest128 {
        let h = XXH3_128bits(bytes.baseAddress, bytes.count)
        return Digest128(high: h.high64, low: h.low64)
    }

    /// Feeds `length` bytes of `fd` from `offset`, read through the page
    /// cache with a mapped window: no copy into our memory, and the window
    /// is unmapped as we go so resident memory stays flat.
    public func update(fd: CInt, offset: UInt64, length: UInt64) throws(IOError) {
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        var at = offset
        let end = offset + length
        while at < end {
            let base = at - at % page
            let span = min(end - base, Self.window)
            let map = mmap(nil, Int(span), PROT_READ, MAP_SHARED | MAP_POPULATE, fd, off_t(base))
            guard let map, map != MAP_FAILED else {
                throw IOError(Errno(rawValue: errno), "map for hashing")
            }
            let skip = Int(at - base)
            update(UnsafeRawBufferPointer(start: map + skip, count: Int(span) - skip))
            munmap(map, Int(span))
            at = base + span
        }
    }

    /// Mapped window size: big enough to amortise mmap, small enough that
    /// resident memory stays well under the 32 MiB budget.
    static let window: UInt64 = 4 << 20
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
}
