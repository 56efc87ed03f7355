/// Every frame starts with the same 8 bytes:
///
///     type u8 | flags u8 | reserved u16 (zero) | body length u32, big-endian
///
/// A reader never guesses a boundary: it reads exactly 8 bytes, then exactly
/// `length` body bytes. A `data` frame is then followed by the chunk payload
/// itself, whose length is in the body, so the receiver can splice it.
public enum FrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 1
    case manifest = 2
    case manifestEnd = 3
    case accept = 4
    case data = 5
    case fileEnd = 6
    case fileAck = 7
    case end = 8
    case done = 9
    case error = 10
    /// Proof of the one-time code (challenge-response), both directions.
    case auth = 11
    /// Prefixes the sender will skip, after `accept` offered them.
    case resume = 12
    /// Several small files, whole, each with its digest.
    case smallFiles = 13
    /// A chain push: where this receiver relays the stream next.
    case relay = 14
    /// A chain receiver's news of the hosts after it.
    case report = 15

    /// Largest body a peer may announce for this type. Every allocation a
    /// peer controls is held under one of these caps.
    public var bodyCap: UInt32 {
        switch self {
        case .hello: return 1024
        case .manifest: return Manifest.frameCap
        case .manifestEnd: return 64
        case .accept: return Accept.frameCap
        case .data: return DataHeader.bodySize
        case .fileEnd: return FileEnd.bodySize
        case .fileAck: return FileAck.bodySize
        case .end: return 0
        case .done: return 64
        case .error: return 2 + 2 + ErrorFrame.messageCap
        case .auth: return AuthProof.bodySize
        case .resume: return Resume.frameCap
        case .smallFiles: return SmallFiles.frameCap
        case .relay: return Relay.frameCap
        case .report: return HopReport.frameCap
        }
    }

    public var description: String {
        switch self {
        case .hello: return "hello"
        case .manifest: return "manifest"
        case .manifestEnd: return "manifest-end"
        case .accept: return "accept"
        case .data: return "data"
        case .fileEnd: return "file-end"
        case .fileAck: return "file-ack"
        case .end: return "end"
        case .done: return "done"
        case .error: return "error"
        case .auth: return "auth"
        case .resume: return "resume"
        case .smallFiles: return "small-files"
        case .relay: return "relay"
        case .report: return "report"
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
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> FramePrefix {
        precondition(bytes.count >= size)
        guard let type = FrameType(rawValue: bytes[0]) else {
            throw .unknownFrameType(bytes[0])
        }
        guard bytes[2] == 0, bytes[3] == 0 else { throw .reservedBitsSet }
        let length = UInt32(bytes[4]) << 24 | UInt32(bytes[5]) << 16 | UInt32(bytes[6]) << 8 | UInt32(bytes[7])
        guard length <= type.bodyCap else {
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
