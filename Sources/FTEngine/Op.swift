import CURing
#if canImport(Glibc)
import Glibc
#endif

/// One I/O operation for the engine. Plain values with raw pointers: the
/// caller owns every buffer and keeps it alive until the completion, so
/// queueing an operation allocates nothing.
public enum Op {
    /// Offset meaning "the fd's own position" (pipes, sockets, streams).
    public static let noOffset: Int64 = -1

    case nop
    case accept(fd: CInt)
    case connect(fd: CInt, address: UnsafePointer<sockaddr>, length: socklen_t)
    case recv(fd: CInt, buffer: UnsafeMutableRawPointer, length: Int, flags: CInt)
    case send(fd: CInt, buffer: UnsafeRawPointer, length: Int, flags: CInt)
    case recvmsg(fd: CInt, message: UnsafeMutablePointer<msghdr>, flags: CInt)
    case sendmsg(fd: CInt, message: UnsafePointer<msghdr>, flags: CInt)
    case read(fd: CInt, buffer: UnsafeMutableRawPointer, length: Int, offset: Int64)
    /// Read into buffer `index` of those given to `registerBuffers`.
    case readFixed(fd: CInt, buffer: UnsafeMutableRawPointer, length: Int, offset: Int64, index: UInt16)
    /// Zero-copy send from registered buffer `index`. Two completions: the
    /// result (flags hold `Completion.more`), then, once the kernel no
    /// longer needs the buffer, one with `Completion.notification`.
    case sendZC(fd: CInt, buffer: UnsafeRawPointer, length: Int, flags: CInt, index: UInt16)
    case write(fd: CInt, buffer: UnsafeRawPointer, length: Int, offset: Int64)
    case splice(input: CInt, inputOffset: Int64, output: CInt, outputOffset: Int64, length: Int, flags: UInt32)
    /// Duplicates up to `length` bytes from pipe `input` into pipe `output`
    /// without consuming them (tee(2)): the relay's fork in the stream.
    case tee(input: CInt, output: CInt, length: Int, flags: UInt32)
    /// `sendfile(2)` issued from the loop thread: there is no ring opcode
    /// for it, so this is the hybrid path (ring for the rest, sendfile
    /// inline). `header` goes first with MSG_MORE, so header and payload
    /// leave as one segment train. The result counts payload bytes only.
    case sendfile(socket: CInt, file: CInt, offset: Int64, length: Int, header: UnsafeRawPointer?, headerLength: Int)
    case poll(fd: CInt, events: UInt32)
    /// Fires after the given nanoseconds unless cancelled.
    case timeout(nanoseconds: UInt64)
    /// Cancels every pending operation on `fd`; each completes with `-ECANCELED`.
    case cancelFD(fd: CInt)
    case shutdown(fd: CInt, how: CInt)

    public var kind: OpKind {
        switch self {
        case .nop: return .nop
        case .accept: return .accept
        case .connect: return .connect
        case .recv: return .recv
        case .send: return .send
        case .recvmsg: return .recvmsg
        case .sendmsg: return .sendmsg
        case .read: return .read
        case .readFixed: return .readFixed
        case .sendZC: return .sendZC
        case .write: return .write
        case .splice: return .splice
        case .tee: return .tee
        case .sendfile: return .sendfile
        case .poll: return .poll
        case .timeout: return .timeout
        case .cancelFD: return .cancel
        case .shutdown: return .shutdown
        }
    }

    /// Bytes the operation asks to move, for short-transfer detection.
    var requestedLength: Int? {
        switch self {
        case .recv(_, _, let n, _), .send(_, _, let n, _), .read(_, _, let n, _), .write(_, _, let n, _),
             .readFixed(_, _, let n, _, _), .sendZC(_, _, let n, _, _),
             .splice(_, _, _, _, let n, _), .tee(_, _, let n, _), .sendfile(_, _, _, let n, _, _):
            return n
        default:
            return nil
        }
    }
}

public enum OpKind: Int, CaseIterable, Sendable, CustomStringConvertible {
    case nop, accept, connect, recv, send, recvmsg, sendmsg, read, write, splice, sendfile, poll, timeout, cancel, shutdown
    case readFixed, sendZC, tee

    public var description: String {
        switch self {
        case .nop: return "nop"
        case .accept: return "accept"
        case .connect: return "connect"
        case .recv: return "recv"
        case .send: return "send"
        case .recvmsg: return "recvmsg"
        case .sendmsg: return "sendmsg"
        case .read: return "read"
        case .write: return "write"
        case .splice: return "splice"
        case .sendfile: return "sendfile"
        case .poll: return "poll"
        case .timeout: return "timeout"
        case .cancel: return "cancel"
        case .shutdown: return "shutdown"
        case .readFixed: return "read_fixed"
        case .sendZC: return "send_zc"
        case .tee: return "tee"
        }
    }
}

/// The 64 bits that travel with an operation and come back in its
/// completion, liburing-example style: no closure, no allocation.
///
///     tag u8 | op kind u8 | generation u16 | slot u32
///
/// The slot names the owner in the loop's table and the generation tells a
/// late completion for a reused slot apart. The tag is the owner's own label
/// for what the operation was for. The kind is filled in by the backend, which
/// uses it to account bytes per operation kind.
public struct UserData: Hashable, Sendable {
    public let raw: UInt64

    public init(raw: UInt64) { self.raw = raw }

    public init(slot: UInt32, generation: UInt16, tag: UInt8) {
        raw = UInt64(tag) << 56 | UInt64(generation & 0xFFFF) << 32 | UInt64(slot)
    }

    public var tag: UInt8 { UInt8(truncatingIfNeeded: raw >> 56) }
    public var kind: OpKind? { OpKind(rawValue: Int(UInt8(truncatingIfNeeded: raw >> 48))) }
    public var generation: UInt16 { UInt16(truncatingIfNeeded: raw >> 32) }
    public var slot: UInt32 { UInt32(truncatingIfNeeded: raw) }

    func with(kind: OpKind) -> UserData {
        UserData(raw: raw & ~(UInt64(0xFF) << 48) | UInt64(kind.rawValue) << 48)
    }

    /// The identity without the kind, as the owner created it.
    public var owner: UserData { UserData(raw: raw & ~(UInt64(0xFF) << 48)) }
}

/// What came back: the operation's result (bytes, an fd, or `-errno`) and
/// the ring's CQE flags.
public struct Completion: Sendable {
    /// Another completion for the same operation will follow.
    public static let more = FT_IORING_CQE_F_MORE
    /// A zero-copy send's buffer is free again.
    public static let notification = FT_IORING_CQE_F_NOTIF

    public var userData: UserData
    public var result: Int32
    public var flags: UInt32

    public init(userData: UserData, result: Int32, flags: UInt32 = 0) {
        self.userData = userData
        self.result = result
        self.flags = flags
    }
}
