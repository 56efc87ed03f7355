import FTWire

/// What of one entry goes on the wire: the byte ranges that travel as data
/// and the ranges that travel as holes (zeros, nothing sent), in offset
/// order. A whole file is one data range; a resumed one starts after its
/// prefix; a sparse one is its extents; a patched one is its changed chunks.
package struct FileSend: Equatable, Sendable {
    package var id: UInt32
    package var kind: ManifestEntry.Kind
    package var size: UInt64
    package var data: [Range<UInt64>]
    package var holes: [Range<UInt64>]

    package init(id: UInt32, kind: ManifestEntry.Kind, size: UInt64, data: [Range<UInt64>]? = nil, holes: [Range<UInt64>] = []) {
        self.id = id
        self.kind = kind
        self.size = size
        self.data = data ?? (kind == .stdin || size == 0 ? [] : [0..<size])
        self.holes = holes
    }

    /// Sent whole in a small-files frame: small, all of it, no holes.
    var travelsWhole: Bool {
        kind == .file && size <= SmallFiles.maxFileSize && holes.isEmpty && data == (size == 0 ? [] : [0..<size])
    }

    var bytesToSend: UInt64 { data.reduce(0) { $0 + UInt64($1.count) } }
}

/// The order of one batch's writes: stdin first, then big files largest
/// first (a long file started late would leave the link idle at the end),
/// then small files batched whole into `small-files` frames; each big
/// file's chunks and holes in offset order, then its trailer. Pure, so
/// ordering, resume, holes and patches are testable.
package struct SendPlan: Sendable {
    package enum Step: Equatable, Sendable {
        /// Send bytes [offset, offset+length) of entry `id`.
        case chunk(id: UInt32, offset: UInt64, length: UInt32)
        /// Say that [offset, offset+length) of entry `id` reads as zeros.
        case hole(id: UInt32, offset: UInt64, length: UInt64)
        /// Pump stdin until EOF.
        case stdin(id: UInt32)
        /// Send the trailer of entry `id`.
        case fileEnd(id: UInt32)
        /// Send these whole files in one `small-files` frame.
        case small([UInt32])
    }

    private enum Item: Sendable {
        case one(FileSend)
        case batch([UInt32])
    }

    private let chunkSize: UInt64
    private let order: [Item]
    private var position = 0
    /// Within the current file: the merged data and hole ranges left.
    private var pieces: [(range: Range<UInt64>, hole: Bool)] = []
    private var piece = 0
    private var offset: UInt64 = 0
    private var startedEntry = false

    /// Files sent in chunks (not stdin, not small-file batches), in the
    /// order they go out: what a helper hashing ahead must read.
    package let chunkedFiles: [UInt32]

    /// `smallFiles`: batch files up to `SmallFiles.maxFileSize`.
    package init(files: [FileSend], chunkSize: UInt32, smallFiles: Bool = true) {
        precondition(chunkSize > 0)
        self.chunkSize = UInt64(chunkSize)
        var piped: [FileSend] = []
        var big: [FileSend] = []
        var small: [FileSend] = []
        for f in files {
            switch f.kind {
            case .stdin: piped.append(f)
            case .file: if smallFiles, f.travelsWhole { small.append(f) } else { big.append(f) }
            default: continue
            }
        }
        big.sort { $0.size > $1.size || ($0.size == $1.size && $0.id < $1.id) }
        var items = (piped + big).map(Item.one)
        var batch: [UInt32] = []
        var bytes = SmallFiles.emptyBodySize
        for f in small {
            let cost = SmallFiles.File.headerSize + Int(f.size)
            if !batch.isEmpty, bytes + cost > SmallFiles.batchBytes {
                items.append(.batch(batch))
                batch = []
                bytes = SmallFiles.emptyBodySize
            }
            batch.append(f.id)
            bytes += cost
        }
        if !batch.isEmpty { items.append(.batch(batch)) }
        order = items
        chunkedFiles = big.map(\.id)
    }

    /// The next write, or nil when this batch's writes are all handed out.
    package mutating func next() -> Step? {
        while position < order.count {
            let f: FileSend
            switch order[position] {
            case .batch(let ids):
                position += 1
                return .small(ids)
            case .one(let one):
                f = one
            }
            if f.kind == .stdin {
                if !startedEntry {
                    startedEntry = true
                    return .stdin(id: f.id)
                }
            } else {
                if !startedEntry {
                    startedEntry = true
                    pieces = (f.data.map { ($0, false) } + f.holes.map { ($0, true) }).sorted { $0.0.lowerBound < $1.0.lowerBound }
                    piece = 0
                    offset = pieces.first?.range.lowerBound ?? 0
                }
                while piece < pieces.count {
                    let p = pieces[piece]
                    if p.hole {
                        piece += 1
                        if let next = pieces[safe: piece] { offset = next.range.lowerBound }
                        return .hole(id: f.id, offset: p.range.lowerBound, length: UInt64(p.range.count))
                    }
                    if offset < p.range.upperBound {
                        let n = min(chunkSize, p.range.upperBound - offset)
                        defer { offset += n }
                        return .chunk(id: f.id, offset: offset, length: UInt32(n))
                    }
                    piece += 1
                    if let next = pieces[safe: piece] { offset = next.range.lowerBound }
                }
            }
            position += 1
            startedEntry = false
            return .fileEnd(id: f.id)
        }
        return nil
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
