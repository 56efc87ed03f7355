import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// The sender's side of the receiver's offers: which held prefixes, copies
/// and chunks hash the same here. It reads what was offered, which may be
/// gigabytes, so it runs on the offload thread, never on the loop.
enum OfferCheck {
    struct Result {
        var items: [BatchPlan.Item] = []
        /// File id → a hasher that read the resumed prefix, for the paths
        /// that hash what they send.
        var hashers: [UInt32: StreamHasher] = [:]
        /// File id → the chunk size of a patch.
        var chunkSizes: [UInt32: UInt32] = [:]
        /// Files whose receiver copy differs from ours, for the log.
        var differing: [String] = []
    }

    static func decide(_ offers: [(SourceItem, BatchAnswer.Offer)]) -> Result {
        var out = Result()
        for (item, offer) in offers {
            let id = item.entry.fileID
            guard item.entry.kind == .file, case .file(let path) = item.origin else {
                out.items.append(BatchPlan.Item(fileID: id, decision: .whole))
                continue
            }
            guard let fd = try? SourceFile.openRegular(path).fd else {
                out.items.append(BatchPlan.Item(fileID: id, decision: .whole))
                continue
            }
            defer { close(fd) }
            let sparse = item.entry.flags.contains(.sparse)
            switch offer {
            case .identical:
                continue
            case .prefix(let bytes, let digest):
                let hasher = StreamHasher()
                if bytes <= item.entry.size, (try? Extents.hash(fd, 0..<bytes, sparse: sparse, into: hasher)) != nil,
                   hasher.digest() == digest {
                    out.items.append(BatchPlan.Item(fileID: id, decision: .resumeAfter(bytes)))
                    out.hashers[id] = hasher
                } else {
                    out.differing.append(item.displayPath)
                    out.items.append(BatchPlan.Item(fileID: id, decision: .whole))
                }
            case .digest(let digest):
                let hasher = StreamHasher()
                let same = (try? Extents.hash(fd, 0..<item.entry.size, sparse: sparse, into: hasher)) != nil && hasher.digest() == digest
                out.items.append(BatchPlan.Item(fileID: id, decision: same ? .skip : .whole))
            case .chunks(let size, let digests):
                let hasher = StreamHasher()
                var reuse: [Bool] = []
                reuse.reserveCapacity(digests.count)
                for (k, theirs) in digests.enumerated() {
                    let lo = UInt64(k) * UInt64(size)
                    let hi = min(item.entry.size, lo + UInt64(size))
                    guard lo < hi else {
                        reuse.append(false)
                        continue
                    }
                    hasher.reset()
                    let ok = (try? Extents.hash(fd, lo..<hi, sparse: sparse, into: hasher)) != nil
                    reuse.append(ok && hasher.digest() == theirs)
                }
                if reuse.contains(true) {
                    out.items.append(BatchPlan.Item(fileID: id, decision: .patch(reuse: reuse)))
                    out.chunkSizes[id] = size
                } else {
                    out.items.append(BatchPlan.Item(fileID: id, decision: .whole))
                }
            }
        }
        return out
    }
}

/// The data and holes of a sparse file (`lseek` `SEEK_DATA`/`SEEK_HOLE`),
/// and hashing that reads holes as zeros without reading them.
enum Extents {
    static let seekData: CInt = 3
    static let seekHole: CInt = 4

    /// Data extents and holes of the file at `path`, covering [0, size).
    /// A file the filesystem cannot say this of is one data extent.
    static func of(_ path: SourcePath, size: UInt64) -> (data: [Range<UInt64>], holes: [Range<UInt64>]) {
        guard let fd = try? SourceFile.openRegular(path).fd else { return (size == 0 ? [] : [0..<size], []) }
        defer { close(fd) }
        return of(fd, size: size)
    }

    static func of(_ fd: CInt, size: UInt64) -> (data: [Range<UInt64>], holes: [Range<UInt64>]) {
        var data: [Range<UInt64>] = []
        var holes: [Range<UInt64>] = []
        var at: UInt64 = 0
        while at < size {
            let d = lseek(fd, off_t(at), seekData)
            if d < 0 {
                // ENXIO: no data after `at`: the rest is a hole.
                if errno == ENXIO { holes.append(at..<size) } else { return (size == 0 ? [] : [0..<size], []) }
                break
            }
            let dataStart = min(UInt64(d), size)
            if dataStart > at { holes.append(at..<dataStart) }
            guard dataStart < size else { break }
            let h = lseek(fd, off_t(dataStart), seekHole)
            let dataEnd = h < 0 ? size : min(UInt64(h), size)
            data.append(dataStart..<dataEnd)
            at = dataEnd
        }
        return (data, holes)
    }

    /// The ranges past `offset`.
    static func clip(_ ranges: [Range<UInt64>], from offset: UInt64) -> [Range<UInt64>] {
        ranges.compactMap { r in
            r.upperBound <= offset ? nil : max(r.lowerBound, offset)..<r.upperBound
        }
    }

    /// Feeds `range` of `fd` to `hasher`; with `sparse`, holes are fed as
    /// zeros from memory, not read.
    static func hash(_ fd: CInt, _ range: Range<UInt64>, sparse: Bool, into hasher: StreamHasher) throws(IOError) {
        guard sparse else {
            try hasher.update(fd: fd, offset: range.lowerBound, length: UInt64(range.count))
            return
        }
        let (data, holes) = of(fd, size: range.upperBound)
        let pieces = (data.map { ($0, false) } + holes.map { ($0, true) }).sorted { $0.0.lowerBound < $1.0.lowerBound }
        for (r, hole) in pieces {
            let lo = max(r.lowerBound, range.lowerBound)
            let hi = min(r.upperBound, range.upperBound)
            guard lo < hi else { continue }
            if hole { hasher.updateZeros(hi - lo) } else { try hasher.update(fd: fd, offset: lo, length: hi - lo) }
        }
    }
}
