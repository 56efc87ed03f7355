/// The entries of the batches not yet acknowledged, found by file id.
///
/// Why not a dictionary by id: the scanner numbers entries in walk order
/// and a batch is a run of consecutive ids, so an id is found by looking
/// through the few batches in flight (the scanner's window) and indexing
/// into one; a batch is kept, and let go once acknowledged, as the array
/// the scanner made. Put into a dictionary one by one, every entry was
/// copied in and removed again. Measured with the scanner's entries moved
/// rather than copied into their batch (`perf stat`, pinned, alternating):
/// the sender's CPU 0.83× on 10,000 × 4 KiB (11 runs), 0.86 – 0.89× on
/// 100,000 × 0.5 – 1 KiB (7 runs, three times); wall 0.96×.
struct ItemWindow {
    private var batches: [(id: UInt32, first: UInt32, items: [SourceItem])] = []

    /// Keeps a batch whose entries have consecutive ids.
    mutating func add(_ batch: TreeScanner.ScanBatch) {
        let first = batch.items.first?.entry.fileID ?? 0
        // Ids only grow, one per entry: the ends tell.
        precondition(batch.items.isEmpty || batch.items[batch.items.count - 1].entry.fileID == first + UInt32(batch.items.count - 1),
                     "a scan batch's ids are not consecutive")
        batches.append((batch.id, first, batch.items))
    }

    subscript(id: UInt32) -> SourceItem? {
        for b in batches.indices {
            let at = id &- batches[b].first
            if id >= batches[b].first, at < batches[b].items.count { return batches[b].items[Int(at)] }
        }
        return nil
    }

    /// A batch's entries, in walk order; empty once it is let go.
    func items(of batchID: UInt32) -> [SourceItem] {
        batches.first { $0.id == batchID }?.items ?? []
    }

    mutating func remove(batch batchID: UInt32) {
        batches.removeAll { $0.id == batchID }
    }

    var isEmpty: Bool { batches.isEmpty }
}
