import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, with what we were doing and on which path or
/// address, so a person can act on it. The errno is kept, typed.
public struct IOError: Error, Equatable, Sendable, CustomStringConvertible {
    public var errno: Errno
    /// What failed, as a verb phrase: "connect", "open", "splice to file".
    public var operation: String
    /// The path or address it failed on, if any.
    public var target: String?
    /// Said instead of the errno's text where the failure has no errno of
    /// its own (a name that does not resolve).
    public var reason: String?

    public init(_ errno: Errno, _ operation: String, _ target: String? = nil, reason: String? = nil) {
        self.errno = errno
        self.operation = operation
        self.target = target
        self.reason = reason
    }

    /// From a negative completion result (`-errno`).
    public init(result: Int32, _ operation: String, _ target: String? = nil) {
        self.init(Errno(rawValue: -result), operation, target)
    }

    public var description: String {
        let on = target.map { " \($0)" } ?? ""
        return "\(operation)\(on): \(reason ?? Self.explain(errno))"
    }

    /// "Connection refused (ECONNREFUSED)".
    public static func explain(_ e: Errno) -> String {
        let text = String(cString: strerror(e.rawValue))
        if let name = errnoNames[e.rawValue] { return "\(text) (\(name))" }
        return "\(text) (errno \(e.rawValue))"
    }
}

private let errnoNames: [CInt: String] = [
    EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", EBADF: "EBADF",
    EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EEXIST: "EEXIST", EXDEV: "EXDEV",
    ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", EMFILE: "EMFILE", ENFILE: "ENFILE",
    EFBIG: "EFBIG", ENOSPC: "ENOSPC", EROFS: "EROFS", EPIPE: "EPIPE", ENAMETOOLONG: "ENAMETOOLONG",
    ELOOP: "ELOOP", ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY", EDQUOT: "EDQUOT",
    EADDRINUSE: "EADDRINUSE", EADDRNOTAVAIL: "EADDRNOTAVAIL", ENETUNREACH: "ENETUNREACH",
    ECONNABORTED: "ECONNABORTED", ECONNRESET: "ECONNRESET", ETIMEDOUT: "ETIMEDOUT",
    ECONNREFUSED: "ECONNREFUSED", EHOSTUNREACH: "EHOSTUNREACH", ECANCELED: "ECANCELED",
    EOPNOTSUPP: "EOPNOTSUPP", ENOTCONN: "ENOTCONN", EMSGSIZE: "EMSGSIZE",
]

/// Runs a syscall until it is not interrupted. A negative result becomes an
/// `IOError`; `what` is only evaluated on failure.
@inline(__always)
public func retryingEINTR<T: FixedWidthInteger>(
    _ operation: @autoclosure () -> String, _ target: @autoclosure () -> String? = nil,
    _ call: () -> T
) throws(IOError) -> T {
    while true {
        let r = call()
        if r >= 0 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        throw IOError(Errno(rawValue: e), operation(), target())
    }
}
