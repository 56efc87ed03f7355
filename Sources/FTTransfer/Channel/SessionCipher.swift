import CAEAD
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

/// Which ciphers this host offers and prefers. AES-256-GCM beats
/// ChaCha20-Poly1305 only with AES-NI and carry-less multiply (here 4.9 vs
/// 3.9 GB/s per core); without them AES in software is several times
/// slower, so a host without them offers ChaCha20-Poly1305 alone.
package enum CipherSuite {
    package static let hasAESGCM = ft_cpu_has_aes_gcm() != 0

    /// What a sender offers when `--cipher` does not say.
    package static var offer: [Cipher] { hasAESGCM ? [.aes256GCM, .chacha20Poly1305] : [.chacha20Poly1305] }

    /// What a receiver takes when `--cipher` does not say, the preferred
    /// first: a sender that offers AES only still gets it.
    package static var preference: [Cipher] {
        hasAESGCM ? [.aes256GCM, .chacha20Poly1305] : [.chacha20Poly1305, .aes256GCM]
    }
}

/// `--encrypt`: after the code's proofs, every byte in each direction is a
/// sealed record
///
///     length u32 (of what follows) | ciphertext | tag (16)
///
/// Keys come from the code through HKDF-SHA256, salted with the session id
/// and both nonces, one key per direction, and bound to the cipher (a
/// record sealed under one cipher's key never opens under the other's); a
/// record's nonce is its counter in that direction, so a record cannot be
/// replayed, reordered or moved to the other direction. A record holds
/// whole frames, a data frame with its payload.
///
/// Records are sealed and opened in place, in the buffers they are sent
/// from and received into, with each direction's key schedule made once:
/// no allocation and no copy per record beyond the cipher's own pass.
final class SessionCipher {
    /// Largest plaintext in one record: a frame up to the small-files cap
    /// (which also holds a chunk and its header), with room.
    static let maxPlaintext = Int(SmallFiles.frameCap) + 4096
    static let tagSize = 16
    static let headerSize = 4
    /// What a record adds to its plaintext.
    static let overhead = headerSize + tagSize
    /// Bytes sealed between two looks at the plaintext by a caller that
    /// hashes it: both passes then find the bytes in L1/L2.
    static let piece = 64 << 10

    let cipher: Cipher
    private let sealer: OpaquePointer
    private let opener: OpaquePointer
    private var sent: UInt64 = 0
    private var received: UInt64 = 0
    private let nonce = CounterNonce()

    init(_ keys: SessionKeys, role: Hello.Role, cipher: Cipher) {
        let salt = keys.sessionID + keys.senderNonce + keys.receiverNonce
        func key(_ direction: String) -> [UInt8] {
            // ChaCha20-Poly1305 keeps the labels of the ft that knew no
            // other cipher, so the two still talk.
            let label = cipher == .chacha20Poly1305 ? "ft-v1 \(direction)" : "ft-v2 \(cipher.rawValue) \(direction)"
            let k = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: keys.code), salt: salt,
                                           info: Array(label.utf8), outputByteCount: 32)
            return k.withUnsafeBytes { Array($0) }
        }
        let s2r = key("sender to receiver")
        let r2s = key("receiver to sender")
        let id = cipher == .aes256GCM ? CInt(FT_AEAD_AES_256_GCM) : CInt(FT_AEAD_CHACHA20_POLY1305)
        func context(_ key: [UInt8], seal: Bool) -> OpaquePointer {
            guard let c = ft_aead_new(id, key, seal ? 1 : 0) else {
                fatalError("libcrypto could not set up \(cipher) (out of memory?)")
            }
            return c
        }
        sealer = context(role == .sender ? s2r : r2s, seal: true)
        opener = context(role == .sender ? r2s : s2r, seal: false)
        self.cipher = cipher
    }

    deinit {
        ft_aead_free(sealer)
        ft_aead_free(opener)
    }

    /// Seals in place the record laid out in `record`: its plaintext at
    /// `headerSize`, `plaintextCount` bytes, and room for the tag after it.
    /// `look` sees the plaintext piece by piece just before it is sealed
    /// (the sender hashes file bytes there). A record of file data is
    /// 512 KiB (`ChunkWriter.sealedRecord`), half of an L2 here, so the
    /// cipher, which takes the record whole, still finds it in cache.
    /// Returns the record's length, header and tag included.
    func seal(record: UnsafeMutableRawBufferPointer, plaintextCount n: Int,
              look: (_ piece: UnsafeRawBufferPointer, _ at: Int) -> Void = { _, _ in }) -> Int {
        precondition(n <= Self.maxPlaintext && record.count >= n + Self.overhead)
        record.storeBytes(of: UInt32(n + Self.tagSize).bigEndian, toByteOffset: 0, as: UInt32.self)
        let base = record.baseAddress! + Self.headerSize
        var at = 0
        while at < n {
            let len = min(Self.piece, n - at)
            look(UnsafeRawBufferPointer(start: base + at, count: len), at)
            at += len
        }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        precondition(ft_aead_seal(sealer, nonce.of(sent), bytes, n, bytes + n) == 1)
        sent += 1
        return n + Self.overhead
    }

    /// Appends the record for `plaintext` to `out`: one copy, then sealed
    /// where it will be sent from.
    func seal(_ plaintext: UnsafeRawBufferPointer, appendingTo out: OutBuffer) {
        let room = out.reserve(plaintext.count + Self.overhead)
        UnsafeMutableRawBufferPointer(rebasing: room[Self.headerSize...]).copyMemory(from: plaintext)
        out.commit(seal(record: room, plaintextCount: plaintext.count))
    }

    /// The record body length announced by a 4-byte header, checked.
    static func bodyLength(_ header: UnsafeRawBufferPointer) -> Int? {
        let n = Int(header.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        return n >= tagSize && n <= maxPlaintext + tagSize ? n : nil
    }

    /// Opens a record body (ciphertext and tag) in place, returning the
    /// plaintext length (the plaintext is then where the ciphertext was);
    /// nil if it was altered, replayed, reordered or sealed with another
    /// key, and then the body's bytes are garbage.
    func open(inPlace body: UnsafeMutableRawBufferPointer) -> Int? {
        guard body.count >= Self.tagSize else { return nil }
        let n = body.count - Self.tagSize
        let base = body.baseAddress!.assumingMemoryBound(to: UInt8.self)
        guard ft_aead_open(opener, nonce.of(received), base, n, base + n) == 1 else { return nil }
        received += 1
        return n
    }
}
