import CURing
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A file descriptor this value owns: it is closed exactly once, when the
/// value goes away, unless ownership is given up with `release()`.
/// Borrow the number with `raw` for the duration of a call; never close it.
public struct OwnedFD: ~Copyable {
    public let raw: CInt

    public init(_ raw: CInt) {
        precondition(raw >= 0, "OwnedFD from a failed call")
        self.raw = raw
    }

    public var descriptor: FileDescriptor { FileDescriptor(rawValue: raw) }

    /// Gives up ownership: the caller must close the number.
    public consuming func release() -> CInt {
        let fd = raw
        discard self
        return fd
    }

    deinit {
        // EINTR from close(2) on Linux still closes the fd; never retry.
        _ = Glibc.close(raw)
    }
}

/// A pipe whose both ends we own, sized for splicing. A class so sessions
/// can hold one lazily and share nothing else about it.
public final class Pipe {
    public let readEnd: CInt
    public let writeEnd: CInt
    /// Capacity in bytes, after `F_SETPIPE_SZ` took effect (it may round up).
    public let capacity: Int

    /// A pipe with at least `size` bytes of capacity where the system allows
    /// it, otherwise the largest it grants (`/proc/sys/fs/pipe-max-size`).
    public init(size: Int, nonBlocking: Bool = false) throws(IOError) {
        var fds: (CInt, CInt) = (-1, -1)
        let flags = O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0)
        _ = try withUnsafeMutablePointer(to: &fds) { p throws(IOError) in
            try p.withMemoryRebound(to: CInt.self, capacity: 2) { q throws(IOError) in
                try retryingEINTR("create a pipe") { ft_pipe2(q, flags) }
            }
        }
        readEnd = fds.0
        writeEnd = fds.1
        var got = ft_fcntl_int(fds.1, FT_F_SETPIPE_SZ, CInt(size))
        if got < 0 {
            // Unprivileged users are capped at pipe-max-size; take what we can.
            got = ft_fcntl(fds.1, FT_F_GETPIPE_SZ)
        }
        capacity = got > 0 ? Int(got) : 65_536
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }
}
