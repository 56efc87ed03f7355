import FTEngine

#if canImport(Glibc)
import Glibc
#endif

/// `ft recv --relay-to`: the networks a chain receiver will dial as its
/// next hop. Without it, a pusher who holds the code could aim the
/// receiver at any address it can reach and learn from the chain's report
/// what listens there.
package struct RelayScope: Sendable, Equatable, CustomStringConvertible {
    package struct Network: Sendable, Equatable {
        /// 4 or 16 bytes, the host bits cleared.
        var prefix: [UInt8]
        var bits: Int
    }

    package let networks: [Network]
    package let description: String

    package struct Invalid: Error, Equatable, CustomStringConvertible {
        package var description: String
    }

    /// Parses `10.0.0.0/8,192.168.1.7,fd00::/8`: a bare address is that one
    /// host. Nil and the reason for text that is no such list.
    package static func parse(_ text: String) -> Result<RelayScope, Invalid> {
        var out: [Network] = []
        // No address or prefix holds a space: "a, b" is "a,b".
        for item in text.filter({ $0 != " " }).split(separator: ",").map(String.init) {
            let parts = item.split(separator: "/", maxSplits: 1).map(String.init)
            guard let bytes = Self.address(parts[0]) else { return .failure(Invalid(description: "'\(item)' is not an IPv4 or IPv6 address or network (like 10.0.0.0/8)")) }
            let most = bytes.count * 8
            var bits = most
            if parts.count == 2 {
                guard let b = Int(parts[1]), (0...most).contains(b) else { return .failure(Invalid(description: "'\(item)': the prefix length must be 0 to \(most)")) }
                bits = b
            }
            out.append(Network(prefix: Self.masked(bytes, bits), bits: bits))
        }
        guard !out.isEmpty else { return .failure(Invalid(description: "--relay-to needs at least one network, like 10.0.0.0/8")) }
        return .success(RelayScope(networks: out, description: text))
    }

    /// Whether `address` lies in one of the networks. An IPv4-mapped IPv6
    /// address counts as the IPv4 address it carries.
    package func contains(_ address: SocketAddress) -> Bool {
        guard var bytes = Self.address(address.host) else { return false }
        if bytes.count == 16, bytes[..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            bytes = Array(bytes[12...])
        }
        return networks.contains { $0.prefix.count == bytes.count && Self.masked(bytes, $0.bits) == $0.prefix }
    }

    private static func address(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    private static func masked(_ bytes: [UInt8], _ bits: Int) -> [UInt8] {
        bytes.enumerated().map { i, b in
            let keep = max(0, min(8, bits - 8 * i))
            return keep == 8 ? b : b & UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
        }
    }
}
