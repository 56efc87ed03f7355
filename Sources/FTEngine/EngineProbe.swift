import CURing
import FTWire
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Which backend to run. `auto` means io_uring when the kernel lets us, and
/// the poll(2) fallback, announced once, when it does not.
public enum EnginePreference: String, Sendable, CaseIterable {
    case auto
    case ioUring = "io_uring"
    case poll

    /// `FT_ENGINE=poll|io_uring` overrides `auto`, for tests and for users
    /// on kernels with a broken io_uring.
    public static func fromEnvironment() -> EnginePreference {
        guard let raw = getenv("FT_ENGINE") else { return .auto }
        return EnginePreference(rawValue: String(decoding: UnsafeRawBufferPointer(start: raw, count: strlen(raw)), as: UTF8.self)) ?? .auto
    }
}

public enum Engine {
    /// Operations the transfer and chat paths rely on.
    static let requiredOpcodes: [(UInt8, String)] = [
        (UInt8(IORING_OP_SPLICE.rawValue), "splice"), (UInt8(IORING_OP_SEND.rawValue), "send"),
        (UInt8(IORING_OP_RECV.rawValue), "recv"), (UInt8(IORING_OP_ACCEPT.rawValue), "accept"),
        (UInt8(IORING_OP_CONNECT.rawValue), "connect"), (UInt8(IORING_OP_POLL_ADD.rawValue), "poll"),
        (UInt8(IORING_OP_TIMEOUT.rawValue), "timeout"), (UInt8(IORING_OP_ASYNC_CANCEL.rawValue), "cancel"),
        (UInt8(IORING_OP_SHUTDOWN.rawValue), "shutdown"), (UInt8(IORING_OP_READ.rawValue), "read"),
        (UInt8(IORING_OP_WRITE.rawValue), "write"), (UInt8(IORING_OP_SENDMSG.rawValue), "sendmsg"),
        (UInt8(IORING_OP_RECVMSG.rawValue), "recvmsg"),
    ]

    private static let warned = Atomic<Bool>(false)

    /// Why io_uring cannot be used here, or nil when it can.
    public static func ioUringUnavailableReason() -> String? {
        let r = ft_io_uring_probe_setup()
        if r < 0 {
            var reason = "io_uring_setup failed: \(IOError.explain(.init(rawValue: -r)))"
            if let disabled = readSmallFile("/proc/sys/kernel/io_uring_disabled"), disabled != "0" {
                reason += "; /proc/sys/kernel/io_uring_disabled is \(disabled)"
            } else if r == -EPERM || r == -ENOSYS {
                reason += "; a seccomp filter (container runtime?) may block it"
            }
            return reason
        }
        guard let probe = io_uring_get_probe() else { return "io_uring probe failed" }
        defer { io_uring_free_probe(probe) }
        let missing = requiredOpcodes.filter { io_uring_opcode_supported(probe, CInt($0.0)) == 0 }.map(\.1)
        if !missing.isEmpty { return "this kernel's io_uring lacks \(missing.joined(separator: ", "))" }
        return nil
    }

    /// The backend to use, warning once per process if we fall back.
    public static func makeBackend(_ preference: EnginePreference, logger: Logger) throws(IOError) -> any IOBackend {
        var pref = preference
        if pref == .auto { pref = EnginePreference.fromEnvironment() }
        switch pref {
        case .poll:
            return PollBackend()
        case .ioUring:
            return try URingBackend()
        case .auto:
            if let reason = ioUringUnavailableReason() {
                warnOnce(logger, reason)
                return PollBackend()
            }
            do {
                return try URingBackend()
            } catch {
                warnOnce(logger, error.description)
                return PollBackend()
            }
        }
    }

    private static func warnOnce(_ logger: Logger, _ reason: String) {
        guard !warned.exchange(true, ordering: .relaxed) else { return }
        logger.warning("io_uring is unavailable (\(reason)); falling back to the poll(2) engine: same data paths, more system calls, lower throughput")
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buf, 64)
        guard n > 0 else { return nil }
        return String(decoding: buf[..<n], as: UTF8.self).trimmed
    }
}
