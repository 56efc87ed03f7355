/// Why a peer's bytes were refused. Every decoder reports one of these and
/// never traps, whatever the input.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A frame type this version does not know.
    case unknownFrameType(UInt8)
    /// The reserved prefix bits were not zero.
    case reservedBitsSet
    /// The announced body length is over the cap for its frame type.
    case frameTooLarge(type: FrameType, length: UInt32, cap: UInt32)
    /// The body ended before a field it must hold.
    case truncated(FrameType, field: String)
    /// A field holds a value that cannot be valid.
    case invalidField(FrameType, field: String, reason: String)
    /// The hello did not start with the ft magic: not an ft peer.
    case badMagic([UInt8])

    public var description: String {
        switch self {
        case .unknownFrameType(let t):
            return "unknown frame type 0x\(String(t, radix: 16))"
        case .reservedBitsSet:
            return "reserved bits set in a frame prefix"
        case .frameTooLarge(let type, let length, let cap):
            return "\(type) frame of \(length) bytes is over the cap of \(cap)"
        case .truncated(let type, let field):
            return "\(type) frame ends before its \(field)"
        case .invalidField(let type, let field, let reason):
            return "\(type) frame has an invalid \(field): \(reason)"
        case .badMagic(let bytes):
            let hex = bytes.prefix(8).map { b in
                let s = String(b, radix: 16)
                return s.count == 1 ? "0" + s : s
            }.joined(separator: " ")
            return "peer is not speaking the ft protocol (first bytes: \(hex))"
        }
    }
}
