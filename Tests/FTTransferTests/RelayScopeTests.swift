import Testing
@testable import FTTransfer
import FTEngine

/// `--relay-to`: which addresses a chain receiver dials.
struct RelayScopeTests {
    func address(_ host: String) throws -> SocketAddress {
        try Endpoint(host: host, port: 7878).resolve()[0]
    }

    @Test func networksAndHostsMatchByPrefix() throws {
        let scope = try RelayScope.parse("10.0.0.0/8, 192.168.1.7,fd00::/8").get()
        #expect(try scope.contains(address("10.200.3.4")))
        #expect(try !scope.contains(address("11.0.0.1")))
        #expect(try scope.contains(address("192.168.1.7")))
        #expect(try !scope.contains(address("192.168.1.8")))
        #expect(try scope.contains(address("fd12::1")))
        #expect(try !scope.contains(address("fe80::1")))
        // An IPv4-mapped IPv6 address is its IPv4 address.
        #expect(try scope.contains(address("::ffff:10.1.2.3")))
        let odd = try RelayScope.parse("172.16.0.0/12").get()
        #expect(try odd.contains(address("172.31.255.255")) && !odd.contains(address("172.32.0.0")))
        #expect(try RelayScope.parse("0.0.0.0/0").get().contains(address("8.8.8.8")))
    }

    @Test func malformedListsSayWhy() {
        for (text, why) in [("10.0.0.0/33", "prefix length"), ("example.com", "not an IPv4"), ("", "at least one"),
                            ("10.0.0.0/x", "prefix length"), ("::/129", "prefix length")] {
            guard case .failure(let e) = RelayScope.parse(text) else {
                Issue.record("'\(text)' was taken")
                continue
            }
            #expect(e.description.contains(why), "'\(text)': \(e.description)")
        }
    }
}
