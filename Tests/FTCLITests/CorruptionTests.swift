import Foundation
import Testing
import FTTestSupport

/// Verification after the data paths hash bytes where they land: a byte
/// corrupted on the receiver (the test build's FT_TEST_CORRUPT_AT hook
/// flips it before it is hashed) is caught on every path, and nothing
/// reaches a final name.
@Suite(.serialized) struct CorruptionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var send: [String]
        var recv: [String]
        var testDescription: String { (send + ["→"] + recv).joined(separator: " ") }
    }

    static let cases: [Case] = ["auto", "sendfile", "splice", "copy", "zc"].flatMap { s in
        ["auto", "splice", "copy"].map { r in Case(send: ["--io", s], recv: ["--io", r]) }
    } + [
        Case(send: ["--encrypt"], recv: []),
        Case(send: ["--encrypt", "--cipher", "chacha20-poly1305"], recv: []),
        Case(send: ["-P", "3", "--chunk", "1M"], recv: []),
    ]

    @Test(arguments: cases) func aByteFlippedOnTheReceiverFailsVerification(_ c: Case) throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let big = tmp.sub("src") + "/big.bin"
        writeFile(big, patternBytes((6 << 20) + 11, seed: 71))
        // Past the first chunk of every path.
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"] + c.recv,
                                  environment: ["FT_TEST_CORRUPT_AT": "\(2 << 20 + 12_345)"])
        let send = try run(ftPath, ["send", recv.address, big, "-q"] + c.send)
        let end = recv.child.wait()
        #expect(send.status == 5, "\(c): sender exit \(send.status): \(send.stderr)")
        #expect(send.stderr.contains("failed verification"), "\(c): \(send.stderr)")
        #expect(end.stdout.contains("failed verification"), "\(c): \(end.stdout)")
        #expect(end.status == 5, "\(c): ft recv --once exit \(end.status), the sender's status for the same failure")
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/dst/big.bin"), "\(c): a corrupted file got its final name")
    }

    @Test func aSmallFileFlippedOnTheReceiverFailsVerification() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src/tree")
        writeFile(src + "/small", patternBytes(5000, seed: 72))
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"], environment: ["FT_TEST_CORRUPT_AT": "4000"])
        let send = try run(ftPath, ["send", recv.address, src, "-q"])
        _ = recv.child.wait()
        #expect(send.status == 5, "exit \(send.status): \(send.stderr)")
        #expect(send.stderr.contains("failed verification"), "\(send.stderr)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/dst/tree/small"))
    }
}
