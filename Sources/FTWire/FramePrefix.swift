/// Every frame starts with the same 8 bytes:
///
///     type u8 | flags u8 | reserved u16 (zero) | body length u32, big-endian
///
/// A reader never guesses a boundary: it reads exactly 8 bytes, then exactly
/// `length` body bytes. A `data` frame is then followed by the chunk payload
/// itself, whose length is in the body, so the receiver can splice it.
public enum FrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 1
    /// Entries of the push, in tree order.
    case batch = 2
    /// Entries and bytes of the whole push, once the sender's scan is done.
    case totals = 3
    /// The receiver's offers for one batch (resume, identical, chunks).
    case answer = 4
    case data = 5
    case fileEnd = 6
    /// The receiver's verdict on every entry of one batch.
    case batchAck = 7
    case end = 8
    case done = 9
    case error = 10
    /// Proof of the one-time code (challenge-response), both directions.
    case auth = 11
    /// The sender's decisions on a batch's offers.
    case plan = 12
    /// Several small files, whole, each with its digest.
    case smallFiles = 13
    /// A chain push: where this receiver relays the stream next.
    case relay = 14
    /// A chain receiver's news of the hosts after it.
    case report = 15
    /// A range of a sparse file that reads as zeros and does not travel.
    case hole = 16
    /// What the sender asks of the push (sync, dry run, totals if known).
    case pushInfo = 17

    /// Largest body a peer may announce for this type. Every allocation a
    /// peer controls is held under one of these caps.
    public var bodyCap: UInt32 {
        switch self {
        case .hello: return 1024
        case .batch: return Batch.frameCap
        case .totals: return 16
        case .answer: return BatchAnswer.frameCap
        case .data: return DataHeader.bodySize
        case .fileEnd: return FileEnd.bodySize
        case .batchAck: return BatchAck.frameCap
        case .end: return 0
        case .done: return UInt32(Done.bodySize)
        case .error: return 2 + 2 + ErrorFrame.messageCap
        case .auth: return AuthProof.bodySize
        case .plan: return BatchPlan.frameCap
        case .smallFiles: return SmallFiles.frameCap
        case .relay: return Relay.frameCap
        case .report: return HopReport.frameCap
        case .hole: return Hole.bodySize
        case .pushInfo: return UInt32(PushInfo.bodySize)
        }
    }

    public var description: String {
        switch self {
        case .hello: return "hello"
        case .batch: return "batch"
        case .totals: return "totals"
        case .answer: return "answer"
        case .data: return "data"
        case .fileEnd: return "file-end"
        case .batchAck: return "batch-ack"
        case .end: return "end"
        case .done: return "done"
        case .error: return "error"
        case .auth: return "auth"
        case .plan: return "plan"
        case .smallFiles: return "small-files"
        case .relay: return "relay"
        case .report: return "report"
        case .hole: return "hole"
        case .pushInfo: return "push-info"
        }
    }
}

public struct FramePrefix: Equatable, Sendable {
    public static let size = 8

    public var type: FrameType
    public var flags: UInt8
    public var length: UInt32

    public init(type: FrameType, flags: UInt8 = 0, length: UInt32) {
        self.type = type
        self.flags = flags
        self.length = length
    }

    /// Decodes and checks a prefix. `bytes` must hold at least 8 bytes.
    /// `extra`: bytes a body may hold beyond its type's cap (a frame's tag
    /// on a connection whose frames are tagged).
    public static func decode(_ bytes: UnsafeRawBufferPointer, extra: UInt32 = 0) throws(WireError) -> FramePrefix {
        precondition(bytes.count >= size)
        guard let type = FrameType(rawValue: bytes[0]) else {
            throw .unknownFrameType(bytes[0])
        }
        guard bytes[2] == 0, bytes[3] == 0 else { throw .reservedBitsSet }
        let length = UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16 | UInt32(bytes[6]) << 8 | UInt32(bytes[7])
        guard length <= type.bodyCap + extra else {
            throw .frameTooLarge(type: type, length: length, cap: type.bodyCap)
        }
        return FramePrefix(type: type, flags: bytes[1], length: length)
    }

    public func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.size)
        out[0] = type.rawValue
        out[1] = flags
        out[2] = 0
        out[3] = 0
        out[4] = UInt8(truncatingIfNeeded: length >> 24)
        out[5] = UInt8(truncatingIfNeeded: length >> 16)
        out[6] = UInt8(truncatingIfNeeded: length >> 8)
        out[7] = UInt8(truncatingIfNeeded: length)
    }
}
