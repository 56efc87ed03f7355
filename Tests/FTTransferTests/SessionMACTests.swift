import Testing
@testable import FTTransfer
import FTWire
import FTTestSupport

/// The frame tags that bind an unencrypted push to its connection.
struct SessionMACTests {
    static let algorithms: [SessionMAC.Algorithm] = [.poly1305, .hmacSHA256]
    let keys = SessionKeys(code: Array("k7mq2fxp93rd".utf8), sessionID: Array(repeating: 7, count: 16),
                           senderNonce: Array(repeating: 1, count: 32), receiverNonce: Array(repeating: 2, count: 32))

    /// A frame as the sender's channel sends it: tagged in place.
    func tagged(_ frame: Frame, by mac: SessionMAC) -> [UInt8] {
        var bytes = FrameCodec.encode(frame)
        mac.tag(&bytes, type: frame.type)
        return bytes
    }

    func verifies(_ bytes: [UInt8], by mac: SessionMAC) -> Bool {
        bytes.withUnsafeBytes { b in
            mac.verify(prefix: UnsafeRawBufferPointer(rebasing: b[..<FramePrefix.size]),
                       body: UnsafeRawBufferPointer(rebasing: b[FramePrefix.size...]))
        }
    }

    @Test(arguments: algorithms) func aTaggedFrameVerifiesOnceInOrderAndAnnouncesItsTag(_ algorithm: SessionMAC.Algorithm) throws {
        let sender = SessionMAC(keys, role: .sender, algorithm: algorithm)
        let receiver = SessionMAC(keys, role: .receiver, algorithm: algorithm)
        let a = tagged(.totals(Totals(entries: 3, bytes: 99)), by: sender)
        let b = tagged(.end, by: sender)
        #expect(a[1] & SessionMAC.taggedFlag != 0)
        let p = try a.withUnsafeBytes { try FramePrefix.decode($0, extra: UInt32(SessionMAC.tagSize)) }
        #expect(p.length == 16 + UInt32(SessionMAC.tagSize))
        #expect(SessionMAC.problem(with: p) == nil)
        // Out of order fails, and does not move the counter on.
        #expect(!verifies(b, by: receiver))
        #expect(verifies(a, by: receiver))
        #expect(verifies(b, by: receiver))
        // A replay is out of order too.
        #expect(!verifies(a, by: receiver))
    }

    @Test(arguments: algorithms) func everyByteOfTheFrameIsCovered(_ algorithm: SessionMAC.Algorithm) {
        let frame = tagged(.fileEnd(FileEnd(fileID: 5, size: 1234, digest: Digest128(high: 1, low: 2))),
                           by: SessionMAC(keys, role: .sender, algorithm: algorithm))
        for i in 0..<frame.count {
            var altered = frame
            altered[i] ^= 0x01
            #expect(!verifies(altered, by: SessionMAC(keys, role: .receiver, algorithm: algorithm)), "byte \(i) flipped")
        }
        #expect(verifies(frame, by: SessionMAC(keys, role: .receiver, algorithm: algorithm)))
    }

    /// A small-files frame carries file bytes: a flipped bit anywhere in a
    /// megabyte of them fails the tag, as in the frame's headers.
    @Test(arguments: algorithms) func theBytesOfSmallFilesAreCoveredToo(_ algorithm: SessionMAC.Algorithm) {
        let files = (0..<16).map { SmallFiles.File(fileID: UInt32($0), digest: Digest128(high: 9, low: UInt64($0)),
                                                    bytes: patternBytes(60_000, seed: UInt64($0) + 1)) }
        let frame = tagged(.smallFiles(SmallFiles(files: files)), by: SessionMAC(keys, role: .sender, algorithm: algorithm))
        #expect(verifies(frame, by: SessionMAC(keys, role: .receiver, algorithm: algorithm)))
        for i in stride(from: 0, to: frame.count, by: 4_999) + [frame.count - 1] {
            var altered = frame
            altered[i] ^= 0x40
            #expect(!verifies(altered, by: SessionMAC(keys, role: .receiver, algorithm: algorithm)), "byte \(i) flipped")
        }
    }

    /// The two algorithms use keys of their own: a frame tagged with one
    /// never verifies under the other, so a peer cannot pick one for a
    /// receiver that agreed to the other.
    @Test func aTagOfOneAlgorithmFailsUnderTheOther() {
        for (a, b) in [(SessionMAC.Algorithm.poly1305, SessionMAC.Algorithm.hmacSHA256), (.hmacSHA256, .poly1305)] {
            let frame = tagged(.totals(Totals(entries: 1, bytes: 2)), by: SessionMAC(keys, role: .sender, algorithm: a))
            #expect(!verifies(frame, by: SessionMAC(keys, role: .receiver, algorithm: b)))
            #expect(verifies(frame, by: SessionMAC(keys, role: .receiver, algorithm: a)))
        }
    }

    @Test func theReceiverAgreesToPoly1305OnlyWhenOffered() {
        #expect(SessionMAC.Algorithm.agreed(receiverHello: [.xxh3, .auth, .poly1305Tags]) == .poly1305)
        #expect(SessionMAC.Algorithm.agreed(receiverHello: [.xxh3, .auth]) == .hmacSHA256)
    }

    @Test(arguments: algorithms) func aTagIsBoundToItsDirectionAndItsSession(_ algorithm: SessionMAC.Algorithm) {
        func mac(_ k: SessionKeys, _ role: Hello.Role) -> SessionMAC { SessionMAC(k, role: role, algorithm: algorithm) }
        let fromReceiver = tagged(.end, by: mac(keys, .receiver))
        #expect(!verifies(fromReceiver, by: mac(keys, .receiver)), "reflected back to its maker")
        var other = keys
        other.receiverNonce[0] ^= 1
        let elsewhere = tagged(.end, by: mac(other, .sender))
        #expect(!verifies(elsewhere, by: mac(keys, .receiver)), "from another session")
        var otherCode = keys
        otherCode.code = Array("zzzzzzzzzzzz".utf8)
        #expect(!verifies(tagged(.end, by: mac(otherCode, .sender)), by: mac(keys, .receiver)))
    }

    @Test(arguments: algorithms) func untaggedOrShortFramesAreNamed(_ algorithm: SessionMAC.Algorithm) {
        #expect(SessionMAC.problem(with: FramePrefix(type: .batch, length: 40))?.contains("without its tag") == true)
        #expect(SessionMAC.problem(with: FramePrefix(type: .batch, flags: SessionMAC.taggedFlag, length: 15)) != nil)
        #expect(SessionMAC.problem(with: FramePrefix(type: .data, length: 16)) == nil, "data headers are not tagged")
        #expect(SessionMAC.problem(with: FramePrefix(type: .data, flags: SessionMAC.taggedFlag, length: 32)) != nil)
        // A body one byte short of its tag cannot verify.
        let mac = SessionMAC(keys, role: .receiver, algorithm: algorithm)
        let prefix: [UInt8] = [FrameType.end.rawValue, SessionMAC.taggedFlag, 0, 0, 0, 0, 0, 15]
        let body = [UInt8](repeating: 0, count: 15)
        #expect(!prefix.withUnsafeBytes { p in body.withUnsafeBytes { mac.verify(prefix: p, body: $0) } })
    }
}
