import FTWire

/// A small file that arrived whole, for entry `id`.
package struct SmallArrival: Equatable, Sendable {
    package var id: UInt32
    package var file: SmallFiles.File
    package init(id: UInt32, file: SmallFiles.File) {
        self.id = id
        self.file = file
    }
}

/// One announced entry of a batch still in flight, after it passed every rule.
package struct IncomingEntry: Equatable, Sendable {
    package var entry: ManifestEntry
    package var path: PeerPath
    package var batchID: UInt32
    package var received = ReceivedRanges()
    package var trailer: FileEnd?
    /// Set once the entry is settled; its batch's acknowledgement holds it.
    package var result: BatchAck.Result?
    /// Parallel streams: chunks whose payload is still on its way to the
    /// file, and whether `finish` was handed out.
    package var pending = 0
    package var finishing = false
    /// What the receiver offered for it, and what the sender decided.
    package var offer: BatchAnswer.Offer?
    package var decision: BatchPlan.Decision = .whole

    package var id: UInt32 { entry.fileID }
    package var isData: Bool { entry.kind == .file || entry.kind == .stdin }
    package var finished: Bool { result != nil }
}

/// An entry's name as a message shows it, escaped only when a message is
/// made: the checks on every chunk and small file must not pay for it.
struct MessageName: CustomStringConvertible {
    let path: PeerPath
    var description: String { Escape.forMessage(bytes: Array(path.description.utf8)) }
}
