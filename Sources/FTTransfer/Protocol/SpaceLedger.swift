/// Free space across a push that arrives in batches. A batch is checked
/// before any of its bytes land, but the filesystem's free count only
/// shows what has been written: batches answered earlier and still
/// arriving have claims on it too. And while every entry so far was new,
/// the sender's announced total says early whether the rest can fit.
///
/// Conservative by design: bytes of files still being written are counted
/// as outstanding until the file commits (its first bytes already lowered
/// the free count), so a push may be refused up to a window of data early,
/// never admitted into a disk it cannot fit.
package struct SpaceLedger: Sendable, Equatable {
    /// Bytes answered batches need in all.
    private var claimed: UInt64 = 0
    /// Bytes of committed files since.
    private var landed: UInt64 = 0
    /// File bytes of the batches reviewed, needed or not.
    private var reviewed: UInt64 = 0
    /// Whether every entry reviewed so far was new here: then the
    /// announced total is what the rest of the push needs.
    private var fresh = true
    private var announced: UInt64?

    package init() {}

    private var outstanding: UInt64 { claimed > landed ? claimed - landed : 0 }

    private func remainder(after fileBytes: UInt64) -> UInt64 {
        guard fresh, let announced else { return 0 }
        let seen = reviewed + fileBytes
        return announced > seen ? announced - seen : 0
    }

    /// The sender's total (`Totals.bytes`): what must be free now.
    package mutating func announce(_ total: UInt64) -> UInt64 {
        announced = total
        return outstanding + remainder(after: 0)
    }

    /// What must be free to take a batch that needs `needed` bytes, whose
    /// files hold `fileBytes` in all (some may be there already; `allNew`
    /// says none is).
    package func required(needed: UInt64, fileBytes: UInt64, allNew: Bool) -> UInt64 {
        outstanding + needed + (allNew ? remainder(after: fileBytes) : 0)
    }

    /// The batch was answered.
    package mutating func accept(needed: UInt64, fileBytes: UInt64, allNew: Bool) {
        claimed += needed
        reviewed += fileBytes
        if !allNew { fresh = false }
    }

    /// A file of an answered batch committed `bytes`.
    package mutating func land(_ bytes: UInt64) {
        landed += bytes
    }
}
