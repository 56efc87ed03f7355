import CURing
#if canImport(Glibc)
import Glibc
#endif

public enum BackendKind: String, Sendable {
    /// io_uring through liburing: the normal engine.
    case ioUring = "io_uring"
    /// Plain non-blocking syscalls and poll(2), for systems where io_uring is
    /// disabled or filtered. Same operations, same completions.
    case poll = "poll"
}

/// Counters that show which path really carried the bytes. Updated per
/// completion into fixed arrays: nothing allocates on the hot path.
public struct EngineStats: Sendable {
    /// Operations completed, by kind.
    public var completed = [UInt64](repeating: 0, count: OpKind.allCases.count)
    /// Bytes moved by completed operations (positive results), by kind.
    public var bytes = [UInt64](repeating: 0, count: OpKind.allCases.count)
    /// Times the backend entered the kernel to submit or wait.
    public var enters: UInt64 = 0

    public init() {}

    public subscript(count kind: OpKind) -> UInt64 { completed[kind.rawValue] }
    public subscript(bytes kind: OpKind) -> UInt64 { bytes[kind.rawValue] }

    mutating func record(_ c: Completion) {
        guard let kind = c.userData.kind else { return }
        completed[kind.rawValue] &+= 1
        switch kind {
        case .recv, .send, .recvmsg, .sendmsg, .read, .write, .splice, .tee, .sendfile, .readFixed, .sendZC:
            // A zero-copy send's notification repeats nothing; count once.
            if c.result > 0, c.flags & Completion.notification == 0 { bytes[kind.rawValue] &+= UInt64(c.result) }
        default:
            break
        }
    }

    /// Non-zero counters as `kind: count ops, bytes B`.
    public var summary: [(kind: OpKind, count: UInt64, bytes: UInt64)] {
        OpKind.allCases.compactMap { k in
            completed[k.rawValue] == 0 ? nil : (k, completed[k.rawValue], bytes[k.rawValue])
        }
    }
}

/// Where operations go and completions come from. One per thread.
public protocol IOBackend: AnyObject {
    var kind: BackendKind { get }
    var stats: EngineStats { get }

    /// Queues an operation. With `link`, the next queued operation starts
    /// only after this one completes in full; if this one fails or comes up
    /// short, the rest of the chain completes with `-ECANCELED`. With
    /// `quiet`, success posts no completion (IOSQE_CQE_SKIP_SUCCESS): for a
    /// send whose result nobody waits for. Failures still complete.
    func queue(_ op: Op, _ userData: UserData, link: Bool, quiet: Bool)

    /// Submits what is queued, waits until at least one completion is ready
    /// (or `timeoutNanoseconds` pass), and hands every ready completion to
    /// `handle`. `handle` may queue more operations.
    func run(timeoutNanoseconds: UInt64?, _ handle: (Completion) -> Void) throws(IOError)

    /// Prepares a socket for this backend before any operation uses it.
    func adopt(socket fd: CInt)

    /// Registers buffers for `readFixed` and `sendZC` (index = position).
    func registerBuffers(_ buffers: [UnsafeMutableRawBufferPointer]) throws(IOError)

    /// Before sleeping for a completion, keep looking for one this long
    /// (0: sleep at once). On this VM kind a sleeping thread's wake-up
    /// costs ~100 µs (the idle vCPU halts, and waking it takes an IPI
    /// through the hypervisor): 64 B TCP ping-pong p50 126 – 167 µs asleep,
    /// 15 – 17 µs with a 50 µs spin. For loops that answer people (chat)
    /// and the latency benchmark; bulk transfers sleep, their CPU is the
    /// other side's on a small host.
    var idleSpinNanoseconds: UInt64 { get set }
}

extension IOBackend {
    /// What latency-sensitive loops spin for (see `idleSpinNanoseconds`).
    public static var latencySpinNanoseconds: UInt64 { 50_000 }
}

extension IOBackend {
    public func queue(_ op: Op, _ userData: UserData) { queue(op, userData, link: false, quiet: false) }
    public func queue(_ op: Op, _ userData: UserData, link: Bool) { queue(op, userData, link: link, quiet: false) }
}

/// Whether a completion broke a link chain: an error, or fewer bytes than
/// asked for a transfer whose chain depends on its length.
func breaksLink(_ op: Op, result: Int32) -> Bool {
    if result < 0 { return true }
    switch op {
    case .read, .write, .splice, .sendfile, .readFixed:
        return Int(result) < op.requestedLength!
    case .recv(_, _, let n, let flags), .send(_, _, let n, let flags), .sendZC(_, _, let n, let flags, _):
        return flags & CInt(MSG_WAITALL) != 0 && Int(result) < n
    default:
        return false
    }
}
