import FTWire

/// A small file that arrived whole, for entry `id`.
public struct SmallArrival: Equatable, Sendable {
    public var id: UInt32
    public var file: SmallFiles.File
    public init(id: UInt32, file: SmallFiles.File) {
        self.id = id
        self.file = file
    }
}

/// One announced entry of a batch still in flight, after it passed every rule.
public struct IncomingEntry: Equatable, Sendable {
    public var entry: ManifestEntry
    public var path: PeerPath
    public var batchID: UInt32
    public var received = ReceivedRanges()
    public var trailer: FileEnd?
    /// Set once the entry is settled; its batch's acknowledgement holds it.
    public var result: BatchAck.Result?
    /// Parallel streams: chunks whose payload is still on its way to the
    /// file, and whether `finish` was handed out.
    public var pending = 0
    public var finishing = false
    /// What the receiver offered for it, and what the sender decided.
    public var offer: BatchAnswer.Offer?
    public var decision: BatchPlan.Decision = .whole

    public var id: UInt32 { entry.fileID }
    public var isData: Bool { entry.kind == .file || entry.kind == .stdin }
    public var finished: Bool { result != nil }
}

/// An entry's name as a message shows it, escaped only when a message is
/// made: the checks on every chunk and small file must not pay for it.
struct MessageName: CustomStringConvertible {
    let path: PeerPath
    var description: String { Escape.forMessage(bytes: Array(path.description.utf8)) }
}
