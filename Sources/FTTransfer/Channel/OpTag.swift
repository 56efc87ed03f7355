import FTEngine

/// What an operation was for, in the 8-bit tag of its user data (the rest
/// of the user data names the handler: see `UserData`):
///
///     op u5 | index u3
///
/// `index` tells apart operations of one family that run side by side: the
/// receiver's splice pipes, the sender's zero-copy buffers. Every handler in
/// FTTransfer draws from this one table, so a tag means the same thing
/// wherever it is read (docs/ARCHITECTURE.md lists it).
struct OpTag: Equatable, Sendable, CustomStringConvertible {
    enum Op: UInt8, CaseIterable, Sendable {
        /// connect(2) of an outgoing connection.
        case connect = 1
        /// A frame's 8-byte prefix (or a sealed record's length, or a
        /// read-ahead buffer).
        case readPrefix
        /// A frame's body (or a sealed record, or a nop for a frame already
        /// in memory).
        case readBody
        /// Queued control frames, in one send.
        case sendControl
        /// Sender, splice path: file → pipe.
        case spliceIn
        /// Sender, splice path: pipe → socket.
        case spliceOut
        /// Receiver, copy path: socket → buffer.
        case payloadRecv
        /// Receiver, copy and sealed paths: buffer → file.
        case payloadWrite
        /// Sender: a chunk's payload (sendfile, send, zero-copy send).
        case sendChunk
        /// Sender: a chunk's 24-byte data header.
        case chunkHeader
        /// Sender, copy, zc and sealed paths: file → buffer.
        case chunkRead
        /// Sender: a read of stdin.
        case stdinRead
        /// A cancel or shutdown whose result nobody needs.
        case shutdown
        /// Sender: the `--limit` timer.
        case pace
        /// Receiver: a chunk sent again, read and dropped.
        case discardRecv
        /// Receiver, splice path: socket → pipe `index`.
        case pipeFill
        /// Receiver relaying a chain push: pipe `index` → its twin.
        case pipeTee
        /// Receiver relaying: twin `index` → the next host's socket.
        case pipeSend
        /// Receiver, splice path: pipe `index` → file.
        case pipeDrain
        /// Sender, zc path: zero-copy send from registered buffer `index`.
        case zcSend
        /// Sender: a small file not in the page cache → staging, lane
        /// `index` of a `SmallReads` registration.
        case smallRead
    }

    static let maxIndex = 7

    let op: Op
    let index: Int

    init(_ op: Op, _ index: Int = 0) {
        precondition(index >= 0 && index <= Self.maxIndex)
        self.op = op
        self.index = index
    }

    init?(raw: UInt8) {
        guard let op = Op(rawValue: raw >> 3) else { return nil }
        self.op = op
        self.index = Int(raw & 7)
    }

    var raw: UInt8 { op.rawValue << 3 | UInt8(index) }

    var description: String { index == 0 ? "\(op)" : "\(op)[\(index)]" }
}

extension Registration {
    func userData(_ tag: OpTag) -> UserData { userData(tag.raw) }
}

extension Completion {
    var tag: OpTag? { OpTag(raw: userData.tag) }
}
