import FTWire

/// The order of writes for a push: stdin first, then big files largest
/// first (a long file started late would leave the link idle at the end),
/// then small files batched whole into `small-files` frames; each big
/// file's chunks and its trailer; then `end`. Pure, so ordering and resume
/// offsets are testable.
public struct SendPlan: Sendable {
    public enum Step: Equatable, Sendable {
        /// Send bytes [offset, offset+length) of entry `index`.
        case chunk(index: Int, offset: UInt64, length: UInt32)
        /// Pump stdin until EOF.
        case stdin(index: Int)
        /// Send the trailer of entry `index`.
        case fileEnd(index: Int)
        /// Send these whole files in one `small-files` frame.
        case small([Int])
        case end
    }

    private enum Item: Sendable {
        case one(Int)
        case batch([Int])
    }

    private let entries: [ManifestEntry]
    private let chunkSize: UInt64
    private var skip: [UInt32: UInt64]
    private let order: [Item]
    private var position = 0
    private var offset: UInt64 = 0
    private var startedEntry = false
    private var ended = false

    /// Files sent in chunks (not stdin, not small-file batches), in the
    /// order they go out: what a helper hashing ahead of the sender must
    /// read, and in which order.
    public var chunkedFiles: [Int] {
        order.compactMap { item in
            guard case .one(let i) = item, entries[i].kind == .file else { return nil }
            return i
        }
    }

    /// `smallFiles`: batch files up to `SmallFiles.maxFileSize`.
    public init(entries: [ManifestEntry], chunkSize: UInt32, skip: [UInt32: UInt64] = [:], smallFiles: Bool = true) {
        precondition(chunkSize > 0)
        self.entries = entries
        self.chunkSize = UInt64(chunkSize)
        self.skip = skip
        var piped: [Int] = []
        var big: [Int] = []
        var small: [Int] = []
        for (i, e) in entries.enumerated() {
            switch e.kind {
            case .directory: continue
            case .stdin: piped.append(i)
            case .file:
                if smallFiles, e.size <= SmallFiles.maxFileSize, skip[e.fileID] == nil { small.append(i) } else { big.append(i) }
            }
        }
        big.sort { entries[$0].size > entries[$1].size || (entries[$0].size == entries[$1].size && $0 < $1) }
        var items = (piped + big).map(Item.one)
        var batch: [Int] = []
        var bytes = SmallFiles.emptyBodySize
        for i in small {
            let cost = SmallFiles.File.headerSize + Int(entries[i].size)
            if !batch.isEmpty, bytes + cost > SmallFiles.batchBytes {
                items.append(.batch(batch))
                batch = []
                bytes = SmallFiles.emptyBodySize
            }
            batch.append(i)
            bytes += cost
        }
        if !batch.isEmpty { items.append(.batch(batch)) }
        order = items
    }

    public mutating func next() -> Step? {
        while position < order.count {
            let index: Int
            switch order[position] {
            case .batch(let files):
                position += 1
                return .small(files)
            case .one(let i):
                index = i
            }
            let e = entries[index]
            if e.kind == .stdin {
                if !startedEntry {
                    startedEntry = true
                    return .stdin(index: index)
                }
            } else {
                if !startedEntry {
                    startedEntry = true
                    offset = min(skip[e.fileID] ?? 0, e.size)
                }
                if offset < e.size {
                    let n = min(chunkSize, e.size - offset)
                    defer { offset += n }
                    return .chunk(index: index, offset: offset, length: UInt32(n))
                }
            }
            position += 1
            startedEntry = false
            return .fileEnd(index: index)
        }
        if ended { return nil }
        ended = true
        return .end
    }
}
