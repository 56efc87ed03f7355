import Testing
@testable import FTTransfer
import FTWire

/// The frame tags that bind an unencrypted push to its connection.
struct SessionMACTests {
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

    @Test func aTaggedFrameVerifiesOnceInOrderAndAnnouncesItsTag() throws {
        let sender = SessionMAC(keys, role: .sender), receiver = SessionMAC(keys, role: .receiver)
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

    @Test func everyByteOfTheFrameIsCovered() {
        let frame = tagged(.fileEnd(FileEnd(fileID: 5, size: 1234, digest: Digest128(high: 1, low: 2))), by: SessionMAC(keys, role: .sender))
        for i in 0..<frame.count {
            var altered = frame
            altered[i] ^= 0x01
            #expect(!verifies(altered, by: SessionMAC(keys, role: .receiver)), "byte \(i) flipped")
        }
        #expect(verifies(frame, by: SessionMAC(keys, role: .receiver)))
    }

    @Test func aTagIsBoundToItsDirectionAndItsSession() {
        let fromReceiver = tagged(.end, by: SessionMAC(keys, role: .receiver))
        #expect(!verifies(fromReceiver, by: SessionMAC(keys, role: .receiver)), "reflected back to its maker")
        var other = keys
        other.receiverNonce[0] ^= 1
        let elsewhere = tagged(.end, by: SessionMAC(other, role: .sender))
        #expect(!verifies(elsewhere, by: SessionMAC(keys, role: .receiver)), "from another session")
        var otherCode = keys
        otherCode.code = Array("zzzzzzzzzzzz".utf8)
        #expect(!verifies(tagged(.end, by: SessionMAC(otherCode, role: .sender)), by: SessionMAC(keys, role: .receiver)))
    }

    @Test func untaggedOrShortFramesAreNamed() {
        #expect(SessionMAC.problem(with: FramePrefix(type: .batch, length: 40))?.contains("without its tag") == true)
        #expect(SessionMAC.problem(with: FramePrefix(type: .batch, flags: SessionMAC.taggedFlag, length: 15)) != nil)
        #expect(SessionMAC.problem(with: FramePrefix(type: .data, length: 16)) == nil, "data headers are not tagged")
        #expect(SessionMAC.problem(with: FramePrefix(type: .data, flags: SessionMAC.taggedFlag, length: 32)) != nil)
        // A body one byte short of its tag cannot verify.
        let mac = SessionMAC(keys, role: .receiver)
        let prefix: [UInt8] = [FrameType.end.rawValue, SessionMAC.taggedFlag, 0, 0, 0, 0, 0, 15]
        let body = [UInt8](repeating: 0, count: 15)
        #expect(!prefix.withUnsafeBytes { p in body.withUnsafeBytes { mac.verify(prefix: p, body: $0) } })
    }
}
