/// Byte ranges received for one file, merged as they arrive. Chunks may come
/// in any order (resume, parallel streams); `contiguous` is how far from 0
/// everything has arrived, which is how far the hash can advance.
///
/// Every edit finds its place by binary search and touches only the ranges
/// it merges with, so a peer sending many tiny chunks at scattered offsets
/// costs O(log n) per chunk plus the array move, never a sort.
package struct ReceivedRanges: Equatable, Sendable {
    /// Sorted, disjoint, non-adjacent half-open ranges.
    package private(set) var ranges: [Range<UInt64>] = []
    /// Bytes in all ranges.
    package private(set) var total: UInt64 = 0

    package init() {}

    package var contiguous: UInt64 {
        guard let first = ranges.first, first.lowerBound == 0 else { return 0 }
        return first.upperBound
    }

    /// Index of the first range that ends at or after `offset`.
    private func firstEnding(atOrAfter offset: UInt64) -> Int {
        var lo = 0
        var hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].upperBound < offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Adds a range; false if it overlaps bytes already received.
    package mutating func insert(_ r: Range<UInt64>) -> Bool {
        guard !r.isEmpty else { return true }
        let i = firstEnding(atOrAfter: r.lowerBound)
        // Ranges at i and after end at or after r's start: the first may
        // touch r's start (ends exactly there) or overlap it.
        var j = i
        if j < ranges.count, ranges[j].upperBound == r.lowerBound { j += 1 }
        if j < ranges.count, ranges[j].lowerBound < r.upperBound { return false }
        formUnion(r)
        return true
    }

    /// The range holding `offset`, if any.
    package func range(containing offset: UInt64) -> Range<UInt64>? {
        let i = firstEnding(atOrAfter: offset + 1)
        guard i < ranges.count, ranges[i].lowerBound <= offset else { return nil }
        return ranges[i]
    }

    /// Where the first range starting after `offset` starts, if any.
    package func firstStart(after offset: UInt64) -> UInt64? {
        let i = firstEnding(atOrAfter: offset + 1)
        guard i < ranges.count else { return nil }
        return ranges[i].lowerBound > offset ? ranges[i].lowerBound : ranges[safe: i + 1]?.lowerBound
    }

    /// Whether every byte of `r` is received.
    package func contains(_ r: Range<UInt64>) -> Bool {
        guard !r.isEmpty else { return true }
        let i = firstEnding(atOrAfter: r.upperBound)
        return i < ranges.count && ranges[i].lowerBound <= r.lowerBound
    }

    /// Adds a range, merging with whatever it overlaps or touches.
    package mutating func formUnion(_ r: Range<UInt64>) {
        guard !r.isEmpty else { return }
        let from = firstEnding(atOrAfter: r.lowerBound)
        var to = from
        var merged = r
        var absorbed: UInt64 = 0
        while to < ranges.count, ranges[to].lowerBound <= merged.upperBound {
            let x = ranges[to]
            absorbed += UInt64(x.count)
            merged = min(x.lowerBound, merged.lowerBound)..<max(x.upperBound, merged.upperBound)
            to += 1
        }
        ranges.replaceSubrange(from..<to, with: CollectionOfOne(merged))
        total = total - absorbed + UInt64(merged.count)
    }

    /// Takes a range out again (its bytes are to be received anew).
    package mutating func remove(_ r: Range<UInt64>) {
        guard !r.isEmpty else { return }
        // Ranges that end after r starts and begin before r ends.
        let from = firstEnding(atOrAfter: r.lowerBound + 1)
        var to = from
        var kept: [Range<UInt64>] = []
        while to < ranges.count, ranges[to].lowerBound < r.upperBound {
            let x = ranges[to]
            total -= UInt64(x.count)
            if x.lowerBound < r.lowerBound { kept.append(x.lowerBound..<r.lowerBound) }
            if x.upperBound > r.upperBound { kept.append(r.upperBound..<x.upperBound) }
            to += 1
        }
        for k in kept { total += UInt64(k.count) }
        ranges.replaceSubrange(from..<to, with: kept)
    }
}
