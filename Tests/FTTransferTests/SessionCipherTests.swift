import Crypto
import FTTestSupport
import Testing
@testable import FTTransfer
import FTWire

/// The sealed records of `--encrypt`, with each cipher: in place, in order,
/// every byte covered, and the same bytes swift-crypto's own AEADs make.
struct SessionCipherTests {
    let keys = SessionKeys(code: Array("k7mq2fxp93rd".utf8), sessionID: Array(repeating: 7, count: 16),
                           senderNonce: Array(repeating: 1, count: 32), receiverNonce: Array(repeating: 2, count: 32))

    /// A record of `plain` sealed in place, as a channel sends it.
    func sealed(_ plain: [UInt8], by c: SessionCipher, look: (UnsafeRawBufferPointer, Int) -> Void = { _, _ in }) -> [UInt8] {
        var record = [UInt8](repeating: 0, count: plain.count + SessionCipher.overhead)
        record.replaceSubrange(SessionCipher.headerSize..<(SessionCipher.headerSize + plain.count), with: plain)
        let n = record.withUnsafeMutableBytes { c.seal(record: $0, plaintextCount: plain.count, look: look) }
        #expect(n == record.count)
        return record
    }

    /// The record's body opened in place, or nil.
    func opened(_ record: [UInt8], by c: SessionCipher) -> [UInt8]? {
        let length = record.withUnsafeBytes { SessionCipher.bodyLength($0) }
        guard length == record.count - SessionCipher.headerSize else { return nil }
        var body = Array(record[SessionCipher.headerSize...])
        guard let n = body.withUnsafeMutableBytes({ c.open(inPlace: $0) }) else { return nil }
        return Array(body[..<n])
    }

    @Test(arguments: Cipher.allCases) func recordsOpenOnceInOrderAndNeverBackwards(_ cipher: Cipher) {
        let s = SessionCipher(keys, role: .sender, cipher: cipher)
        let plain = patternBytes(300_000, seed: 5)
        let a = sealed(plain, by: s), b = sealed([1, 2, 3], by: s)
        let probe = Array(plain[1000..<1032])
        #expect(!(0...(a.count - probe.count)).contains { Array(a[$0..<($0 + probe.count)]) == probe }, "plaintext left in the record")
        let r = SessionCipher(keys, role: .receiver, cipher: cipher)
        #expect(opened(b, by: r) == nil, "out of order")
        let r2 = SessionCipher(keys, role: .receiver, cipher: cipher)
        #expect(opened(a, by: r2) == plain)
        #expect(opened(b, by: r2) == [1, 2, 3])
        #expect(opened(a, by: r2) == nil, "a replay")
        // The other direction's key, and the other cipher's, open nothing.
        #expect(opened(a, by: SessionCipher(keys, role: .sender, cipher: cipher)) == nil)
        let other = Cipher.allCases.first { $0 != cipher }!
        #expect(opened(a, by: SessionCipher(keys, role: .receiver, cipher: other)) == nil)
    }

    @Test(arguments: Cipher.allCases) func aFlippedByteAnywhereIsCaught(_ cipher: Cipher) {
        let record = sealed(patternBytes(700, seed: 9), by: SessionCipher(keys, role: .sender, cipher: cipher))
        for i in SessionCipher.headerSize..<record.count {
            var altered = record
            altered[i] ^= 0x20
            #expect(opened(altered, by: SessionCipher(keys, role: .receiver, cipher: cipher)) == nil, "byte \(i) flipped")
        }
        #expect(opened(record, by: SessionCipher(keys, role: .receiver, cipher: cipher)) != nil)
    }

    @Test func theLookSeesEveryPlaintextByteOnceBeforeItIsSealed() {
        let s = SessionCipher(keys, role: .sender, cipher: .aes256GCM)
        let plain = patternBytes(SessionCipher.piece * 3 + 17, seed: 3)
        var seen: [UInt8] = []
        var offsets: [Int] = []
        _ = sealed(plain, by: s) { piece, at in
            offsets.append(at)
            seen += piece
        }
        #expect(seen == plain)
        #expect(offsets == [0, 1, 2, 3].map { $0 * SessionCipher.piece })
    }

    /// The key a side seals with, derived as the format says.
    func key(_ label: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: keys.code),
                               salt: keys.sessionID + keys.senderNonce + keys.receiverNonce,
                               info: Array(label.utf8), outputByteCount: 32)
    }

    func nonce(_ counter: UInt64) -> [UInt8] {
        [0, 0, 0, 0] + (0..<8).map { UInt8(truncatingIfNeeded: counter >> (56 - 8 * $0)) }
    }

    @Test func recordsAreTheStandardAEADsOutput() throws {
        let plain = patternBytes(100_003, seed: 11)
        // ChaCha20-Poly1305 under the first ft's labels: records it sealed
        // with swift-crypto still open, and the other way round.
        let chacha = SessionCipher(keys, role: .sender, cipher: .chacha20Poly1305)
        _ = sealed([0], by: chacha)
        let mine = sealed(plain, by: chacha)
        let box = try ChaChaPoly.seal(plain, using: key("ft-v1 sender to receiver"), nonce: ChaChaPoly.Nonce(data: nonce(1)))
        #expect(Array(mine[SessionCipher.headerSize...]) == Array(box.ciphertext) + Array(box.tag))

        let aes = SessionCipher(keys, role: .receiver, cipher: .aes256GCM)
        let theirs = try AES.GCM.seal(plain, using: key("ft-v2 aes-256-gcm receiver to sender"), nonce: AES.GCM.Nonce(data: nonce(0)))
        #expect(Array(sealed(plain, by: aes)[SessionCipher.headerSize...]) == Array(theirs.ciphertext) + Array(theirs.tag))
    }
}
