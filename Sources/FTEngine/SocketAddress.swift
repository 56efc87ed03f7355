import CURing
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address, by value.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public private(set) var storage = sockaddr_storage()
    public private(set) var length: socklen_t = 0

    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    public var family: CInt { CInt(storage.ss_family) }

    public var port: UInt16 {
        get {
            withUnsafeBytes(of: storage) { raw in
                // sin_port and sin6_port sit at the same offset.
                UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
            }
        }
        set {
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: newValue.bigEndian, toByteOffset: 2, as: UInt16.self)
            }
        }
    }

    /// The numeric host: "127.0.0.1" or "::1".
    public var host: String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafeBytes(of: storage) { raw in
            let addr = raw.baseAddress! + (family == AF_INET6 ? 8 : 4)
            _ = inet_ntop(family, addr, &buf, socklen_t(buf.count))
        }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var isLoopback: Bool {
        family == AF_INET ? host.hasPrefix("127.") : host == "::1"
    }

    public var isUnspecified: Bool { host == "0.0.0.0" || host == "::" }

    /// "127.0.0.1:7878" or "[::1]:7878".
    public var description: String {
        family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(IOError) -> R) throws(IOError) -> R {
        var copy = storage
        let len = length
        return try withUnsafePointer(to: &copy) { p throws(IOError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(IOError) in try body(sa, len) }
        }
    }
}

/// What a user typed as an address: host (name or numeric) and port.
public struct Endpoint: Equatable, Sendable, CustomStringConvertible {
    /// The port `ft recv` listens on and `ft send` dials unless told otherwise.
    public static let ftPort: UInt16 = 7878

    public var host: String?
    public var port: UInt16

    public init(host: String?, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String {
        guard let host else { return ":\(port)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case badPort(String)
        case unclosedBracket(String)
        case empty

        public var description: String {
            switch self {
            case .badPort(let s): return "'\(s)' is not a port (1-65535)"
            case .unclosedBracket(let s): return "'\(s)' opens '[' without closing it; write IPv6 as [::1]:7878"
            case .empty: return "empty address"
            }
        }
    }

    /// Parses `HOST`, `HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT`. A bare
    /// IPv6 address without brackets is taken whole as the host.
    public static func parse(_ text: String, defaultPort: UInt16, allowPortZero: Bool = false) throws(ParseError) -> Endpoint {
        guard !text.isEmpty else { throw .empty }
        func port(_ s: Substring) throws(ParseError) -> UInt16 {
            guard let p = UInt16(s), p > 0 || allowPortZero else { throw .badPort(String(s)) }
            return p
        }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .unclosedBracket(text) }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return Endpoint(host: host, port: defaultPort) }
            guard rest.hasPrefix(":") else { throw .badPort(String(rest)) }
            return Endpoint(host: host, port: try port(rest.dropFirst()))
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 { return Endpoint(host: text, port: defaultPort) }
        if colons == 1 {
            let i = text.firstIndex(of: ":")!
            let host = String(text[..<i])
            return Endpoint(host: host.isEmpty ? nil : host, port: try port(text[text.index(after: i)...]))
        }
        if text.allSatisfy(\.isNumber) { return Endpoint(host: nil, port: try port(Substring(text))) }
        // "7878x" is a mistyped port, not a host to look up.
        if text.first?.isNumber == true, !text.contains("."), !text.contains(":") { throw .badPort(text) }
        return Endpoint(host: text, port: defaultPort)
    }

    /// Resolves with getaddrinfo. A nil host means every interface when
    /// `passive`, else loopback.
    public func resolve(passive: Bool = false) throws(IOError) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = FT_SOCK_STREAM
        hints.ai_flags = passive ? AI_PASSIVE : 0
        hints.ai_family = AF_UNSPEC
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0 else {
            if rc == EAI_SYSTEM { throw IOError(Errno(rawValue: errno), "resolve", host ?? description) }
            // getaddrinfo's own failures have no errno: say what it said
            // and what to do.
            let said = String(cString: gai_strerror(rc))
            throw IOError(.noSuchAddressOrDevice, "resolve", "'\(host ?? "")'",
                          reason: "\(said); check the host name, or give an IP address")
        }
        defer { freeaddrinfo(res) }
        var out: [SocketAddress] = []
        var p = res
        while let ai = p {
            if ai.pointee.ai_family == AF_INET || ai.pointee.ai_family == AF_INET6 {
                var ss = sockaddr_storage()
                withUnsafeMutableBytes(of: &ss) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: ai.pointee.ai_addr, count: Int(ai.pointee.ai_addrlen)))
                }
                out.append(SocketAddress(storage: ss, length: ai.pointee.ai_addrlen))
            }
            p = ai.pointee.ai_next
        }
        return out
    }
}
