import CURing
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A bound, listening socket and the address it really got (port 0 asks
/// the kernel to pick one).
public struct Listener: ~Copyable {
    public let fd: OwnedFD
    public let address: SocketAddress

    /// Gives up the socket: the caller must close it.
    public consuming func release() -> CInt { fd.release() }
}

/// Socket setup done once per connection, outside the hot path.
public enum Socket {
    /// A listening TCP socket. An endpoint without a host listens on every
    /// interface, IPv6 and IPv4 both where the system allows.
    public static func listen(_ endpoint: Endpoint, backlog: CInt = 512) throws(IOError) -> Listener {
        var candidates: [SocketAddress]
        if endpoint.host == nil {
            candidates = try Endpoint(host: "::", port: endpoint.port).resolve(passive: true)
            candidates += try Endpoint(host: "0.0.0.0", port: endpoint.port).resolve(passive: true)
        } else {
            candidates = try endpoint.resolve(passive: true)
        }
        var lastError = IOError(.noSuchAddressOrDevice, "listen on", endpoint.description)
        for address in candidates {
            do {
                let fd = try makeTCP(family: address.family)
                var one: CInt = 1
                setsockopt(fd.raw, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
                if address.family == AF_INET6 {
                    var zero: CInt = 0
                    setsockopt(fd.raw, CInt(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<CInt>.size))
                }
                try address.withSockaddr { sa, len throws(IOError) in
                    _ = try retryingEINTR("bind", address.description) { bind(fd.raw, sa, len) }
                }
                _ = try retryingEINTR("listen on", address.description) { Glibc.listen(fd.raw, backlog) }
                let bound = try localAddress(fd.raw)
                return Listener(fd: fd, address: bound)
            } catch {
                lastError = error
                if error.errno == .addressInUse { break }
            }
        }
        if lastError.errno == .addressInUse {
            lastError.operation = "listen on"
            lastError.target = endpoint.description + " (another program holds the port; pick another with --listen)"
        }
        throw lastError
    }

    public static func makeTCP(family: CInt) throws(IOError) -> OwnedFD {
        try make(family: family, type: FT_SOCK_STREAM)
    }

    public static func makeUDP(family: CInt) throws(IOError) -> OwnedFD {
        try make(family: family, type: FT_SOCK_DGRAM)
    }

    public static func make(family: CInt, type: CInt) throws(IOError) -> OwnedFD {
        OwnedFD(try retryingEINTR("create a socket") {
            socket(family, type | FT_SOCK_CLOEXEC, 0)
        })
    }

    public static func localAddress(_ fd: CInt) throws(IOError) -> SocketAddress {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &ss) { p throws(IOError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(IOError) in
                try retryingEINTR("getsockname") { getsockname(fd, sa, &len) }
            }
        }
        return SocketAddress(storage: ss, length: len)
    }

    public static func peerAddress(_ fd: CInt) -> SocketAddress? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        }
        return r == 0 ? SocketAddress(storage: ss, length: len) : nil
    }

    public static func setInt(_ fd: CInt, _ level: CInt, _ name: CInt, _ value: CInt) {
        var v = value
        setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<CInt>.size))
    }

    /// Bounds how long a blocking send (or sendfile) may wait on a peer
    /// that stopped reading.
    public static func setSendTimeout(_ fd: CInt, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Addresses of this host's interfaces that are up, for telling a user
    /// where to send. Loopback last.
    public static func interfaceAddresses(family: CInt? = nil) -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [String] = []
        var loop: [String] = []
        var p = list
        while let ifa = p {
            p = ifa.pointee.ifa_next
            guard let sa = ifa.pointee.ifa_addr, ifa.pointee.ifa_flags & UInt32(IFF_UP) != 0 else { continue }
            let fam = CInt(sa.pointee.sa_family)
            guard fam == AF_INET || fam == AF_INET6, family == nil || family == fam else { continue }
            var ss = sockaddr_storage()
            let len = fam == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
            withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: len)) }
            let addr = SocketAddress(storage: ss, length: socklen_t(len))
            let host = addr.host
            if host.hasPrefix("fe80") { continue }  // link-local needs a scope id
            if addr.isLoopback { loop.append(host) } else { out.append(host) }
        }
        return out + loop
    }
}

public enum ResourceLimits {
    /// For paths that allocate a chunk-sized buffer per chunk (the crypto
    /// API returns fresh ones): keep such blocks in the heap for reuse.
    /// Measured: page faults were 23% of an encrypting sender's time.
    public static func reuseLargeAllocations() { ft_malloc_reuse_large_blocks() }

    /// Raises the soft open-files limit to the hard one: a receiver or a
    /// chat room holds one descriptor per connection, and 1024 is a common
    /// soft default. Returns the limit now in force.
    @discardableResult
    public static func raiseOpenFiles() -> UInt64 {
        var lim = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else { return 0 }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        }
        return UInt64(lim.rlim_cur)
    }
}

/// A socket this object owns: closed exactly once, when the object goes
/// away, so completions still in flight never meet a reused number.
public final class OwnedSocket {
    public let fd: CInt

    public init(_ fd: CInt) {
        precondition(fd >= 0)
        self.fd = fd
    }

    deinit { close(fd) }

    /// Ends both directions now; operations in flight on it complete.
    public func shutdown(_ how: CInt = CInt(SHUT_RDWR)) {
        _ = Glibc.shutdown(fd, how)
    }
}
