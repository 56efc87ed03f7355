import Crypto
import FTEngine
import FTWire

/// What both sides of a handshake know once the proofs are exchanged: the
/// code and the three random values that make this session's keys.
package struct SessionKeys: Equatable, Sendable {
    package var code: [UInt8]
    package var sessionID: [UInt8]
    package var senderNonce: [UInt8]
    package var receiverNonce: [UInt8]

    package init(code: [UInt8], sessionID: [UInt8], senderNonce: [UInt8], receiverNonce: [UInt8]) {
        self.code = code
        self.sessionID = sessionID
        self.senderNonce = senderNonce
        self.receiverNonce = receiverNonce
    }

    /// The proof that `role` knows the code, bound to this session.
    package func proof(_ role: Hello.Role) -> AuthProof {
        AuthCode.proof(code: code, role: role, session: sessionID, senderNonce: senderNonce, receiverNonce: receiverNonce)
    }
}

/// `--encrypt`: after the code's proofs, every byte in each direction is a
/// sealed record
///
///     length u32 (of what follows) | ChaCha20-Poly1305 ciphertext | tag (16)
///
/// Keys come from the code through HKDF-SHA256, salted with the session id
/// and both nonces, one key per direction; a record's nonce is its counter
/// in that direction, so a record cannot be replayed, reordered or moved to
/// the other direction. A record holds whole frames, a data frame with its
/// payload: this path copies through user space, unlike the zero-copy ones.
final class SessionCipher {
    /// Largest plaintext in one record: a frame up to the small-files cap
    /// (which also holds a chunk and its header), with room.
    static let maxPlaintext = Int(SmallFiles.frameCap) + 4096
    static let tagSize = 16
    static let headerSize = 4

    private let sendKey: SymmetricKey
    private let receiveKey: SymmetricKey
    private var sent: UInt64 = 0
    private var received: UInt64 = 0

    init(_ keys: SessionKeys, role: Hello.Role) {
        let salt = keys.sessionID + keys.senderNonce + keys.receiverNonce
        func key(_ label: String) -> SymmetricKey {
            HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: keys.code), salt: salt,
                                   info: Array("ft-v1 \(label)".utf8), outputByteCount: 32)
        }
        ResourceLimits.reuseLargeAllocations()
        let s2r = key("sender to receiver")
        let r2s = key("receiver to sender")
        sendKey = role == .sender ? s2r : r2s
        receiveKey = role == .sender ? r2s : s2r
    }

    private static func nonce(_ counter: UInt64) -> ChaChaPoly.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { bytes[4 + i] = UInt8(truncatingIfNeeded: counter >> (56 - 8 * i)) }
        return try! ChaChaPoly.Nonce(data: bytes)
    }

    /// Appends the record for `plaintext`, length prefix included, to `out`.
    func seal(_ plaintext: UnsafeRawBufferPointer, appendingTo out: OutBuffer) {
        precondition(plaintext.count <= Self.maxPlaintext)
        let box = try! ChaChaPoly.seal(plaintext, using: sendKey, nonce: Self.nonce(sent))
        sent += 1
        let body = box.ciphertext.count + Self.tagSize
        withUnsafeBytes(of: UInt32(body).bigEndian) { out.append($0) }
        box.ciphertext.withUnsafeBytes { out.append($0) }
        box.tag.withUnsafeBytes { out.append($0) }
    }

    /// The record body length announced by a 4-byte header, checked.
    static func bodyLength(_ header: UnsafeRawBufferPointer) -> Int? {
        let n = Int(header.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        return n >= tagSize && n <= maxPlaintext + tagSize ? n : nil
    }

    /// Opens a record body (ciphertext and tag) into `out`, returning the
    /// plaintext length; nil if it was altered, replayed, reordered or
    /// sealed with another key.
    func open(_ body: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
        guard body.count >= Self.tagSize, body.count - Self.tagSize <= out.count,
              let box = try? ChaChaPoly.SealedBox(nonce: Self.nonce(received),
                                                  ciphertext: body.prefix(body.count - Self.tagSize),
                                                  tag: body.suffix(Self.tagSize)),
              let plain = try? ChaChaPoly.open(box, using: receiveKey) else { return nil }
        received += 1
        return plain.withUnsafeBytes { src in
            out.copyMemory(from: src)
            return src.count
        }
    }
}
