import CAEAD
import Crypto
import Dispatch
import FTWire

/// Binds a push to its connection when it is not encrypted. The proofs
/// show each side knows the code, but on their own they leave the rest of
/// the connection to whoever carries it: a look-alike receiver could relay
/// both proofs and then push its own manifest. So after the proofs every
/// control frame (push-info, batches, answers, plans, holes, trailers with
/// their digests, small files with their bytes, acks, done, relay, report)
/// carries a tag:
///
///     prefix (flags |= tagged, length = body + 16) | body | tag (16)
///
/// The tag covers the frame's counter in its direction and the prefix and
/// body as sent. Keys come from the code through HKDF, salted with the
/// session id and both nonces, one per direction: a frame cannot be forged
/// without the code, replayed, reordered, dropped without the next one
/// failing, or moved to the other direction or to another session.
///
/// Two algorithms, both cryptographic MACs, chosen in the hellos
/// (`Features.poly1305Tags`):
/// - Poly1305: the frame is ChaCha20-Poly1305's associated data, under a
///   nonce that is the counter, with nothing encrypted. ~6 GB/s on this
///   machine kind (libcrypto's vector Poly1305) against HMAC-SHA256's 1.5
///   even with SHA extensions; and small-files frames, which carry their
///   files' bytes, are most of what is tagged in a push of a tree: HMAC
///   cost the sender ~10% of its CPU there and the receiver ~7%.
/// - HMAC-SHA256 cut to 16 bytes: what a peer that does not offer the
///   first one gets.
///
/// Data headers and chunk payloads are not tagged: they stay on the
/// zero-copy path, and what protects them is the per-file digest in the
/// tagged trailer. That digest is xxh3-128, which is not cryptographic, so
/// an on-path attacker who can rewrite bytes in flight can still read
/// payloads and alter them undetected; `--encrypt` closes both.
package final class SessionMAC {
    package static let tagSize = 16
    /// Set in the prefix's flags of a tagged frame.
    package static let taggedFlag: UInt8 = 0x80

    package enum Algorithm: Sendable, Equatable {
        case poly1305
        case hmacSHA256

        /// What the receiver's hello agreed to (it says `poly1305Tags`
        /// only to a sender that offered it).
        package static func agreed(receiverHello features: Features) -> Algorithm {
            features.contains(.poly1305Tags) ? .poly1305 : .hmacSHA256
        }
    }

    private enum Keys {
        case hmac(send: SymmetricKey, receive: SymmetricKey)
        /// A libcrypto context per direction, key schedule made once.
        case poly1305(sealer: OpaquePointer, opener: OpaquePointer)
    }

    package let algorithm: Algorithm
    private let keys: Keys
    private var sent: UInt64 = 0
    private var received: UInt64 = 0
    private let nonce = CounterNonce()

    package init(_ keys: SessionKeys, role: Hello.Role, algorithm: Algorithm) {
        let salt = keys.sessionID + keys.senderNonce + keys.receiverNonce
        func key(_ label: String) -> SymmetricKey {
            let info = algorithm == .hmacSHA256 ? "ft-v2 frame tags \(label)" : "ft-v3 frame tags poly1305 \(label)"
            return HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: keys.code), salt: salt,
                                          info: Array(info.utf8), outputByteCount: 32)
        }
        let s2r = key("sender to receiver")
        let r2s = key("receiver to sender")
        let (mine, theirs) = role == .sender ? (s2r, r2s) : (r2s, s2r)
        switch algorithm {
        case .hmacSHA256:
            self.keys = .hmac(send: mine, receive: theirs)
        case .poly1305:
            func context(_ key: SymmetricKey, seal: Bool) -> OpaquePointer {
                let made = key.withUnsafeBytes { k in
                    ft_aead_new(CInt(FT_AEAD_CHACHA20_POLY1305), k.baseAddress!.assumingMemoryBound(to: UInt8.self), seal ? 1 : 0)
                }
                guard let made else { fatalError("libcrypto could not set up ChaCha20-Poly1305 (out of memory?)") }
                return made
            }
            self.keys = .poly1305(sealer: context(mine, seal: true), opener: context(theirs, seal: false))
        }
        self.algorithm = algorithm
    }

    /// Makes a throwaway MAC on a helper thread, once per process. The first
    /// MAC of a process cost its handshake ~1.7 ms for libcrypto to load its
    /// default provider and map its names, and about as much again for the
    /// Swift runtime to build the metadata of the key derivation; the
    /// sender and the receiver each paid it in turn, between the proofs, on
    /// every push's critical path. Called where a side starts, it overlaps
    /// the connect and the hellos instead.
    package static func prepare() {
        _ = prepared
    }

    private static let prepared: Void = {
        DispatchQueue.global(qos: .userInitiated).async {
            let zeros = [UInt8](repeating: 0, count: 16)
            let keys = SessionKeys(code: zeros, sessionID: zeros, senderNonce: zeros, receiverNonce: zeros)
            _ = keys.proof(.sender)
            _ = SessionMAC(keys, role: .sender, algorithm: .poly1305)
        }
    }()

    deinit {
        if case .poly1305(let sealer, let opener) = keys {
            ft_aead_free(sealer)
            ft_aead_free(opener)
        }
    }

    /// Whether frames of this type are tagged (all but data headers).
    package static func tags(_ type: FrameType) -> Bool { type != .data }

    /// Finishes a frame built in place: `frame` holds the prefix and
    /// `bodyLength` body bytes, with room for the tag after them. Sets the
    /// flag and the length in the prefix, then writes the tag.
    package func seal(_ frame: UnsafeMutableRawBufferPointer, type: FrameType, bodyLength: Int) {
        FramePrefix(type: type, flags: Self.taggedFlag, length: UInt32(bodyLength + Self.tagSize)).encode(into: frame)
        let signed = UnsafeRawBufferPointer(rebasing: frame[..<(FramePrefix.size + bodyLength)])
        let tag = frame.baseAddress!.advanced(by: signed.count)
        switch keys {
        case .hmac(let key, _):
            let mac = Self.hmac(signed, counter: sent, key: key)
            withUnsafeBytes(of: mac) { tag.copyMemory(from: $0.baseAddress!, byteCount: Self.tagSize) }
        case .poly1305(let sealer, _):
            begin(sealer, sent)
            precondition(ft_aead_associate(sealer, signed.baseAddress!.assumingMemoryBound(to: UInt8.self), signed.count) == 1
                && ft_aead_seal_end(sealer, tag.assumingMemoryBound(to: UInt8.self)) == 1)
        }
        sent += 1
    }

    /// Tags an encoded frame (prefix and body), if its type is tagged: the
    /// tag is appended and the prefix says so. (The channel tags frames
    /// where it queues them; this is for peers that hold frames as arrays.)
    package func tag(_ frame: inout [UInt8], type: FrameType) {
        guard Self.tags(type) else { return }
        let body = frame.count - FramePrefix.size
        frame += [UInt8](repeating: 0, count: Self.tagSize)
        frame.withUnsafeMutableBytes { seal($0, type: type, bodyLength: body) }
    }

    /// The prefix and body of a received frame with its tag checked and
    /// taken off (a data header, untagged, is passed through); nil if the
    /// tag does not verify.
    package func untag(_ p: FramePrefix, prefix: UnsafeRawBufferPointer,
                       body: UnsafeRawBufferPointer) -> (FramePrefix, UnsafeRawBufferPointer)? {
        guard Self.tags(p.type) else { return (p, body) }
        guard verify(prefix: prefix, body: body) else { return nil }
        let length = body.count - Self.tagSize
        return (FramePrefix(type: p.type, length: UInt32(length)), UnsafeRawBufferPointer(rebasing: body[..<length]))
    }

    /// Checks a received tagged frame: its 8-byte prefix, and its body
    /// with the tag last. False if it was altered, forged, replayed or
    /// reordered.
    package func verify(prefix: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) -> Bool {
        guard body.count >= Self.tagSize else { return false }
        let signed = UnsafeRawBufferPointer(rebasing: body[..<(body.count - Self.tagSize)])
        let tag = body.baseAddress!.advanced(by: signed.count)
        let authentic: Bool
        switch keys {
        case .hmac(_, let key):
            let expected = Self.hmac(prefix, signed, counter: received, key: key)
            var diff: UInt8 = 0
            withUnsafeBytes(of: expected) { e in
                for i in 0..<Self.tagSize { diff |= e[i] ^ body[signed.count + i] }
            }
            authentic = diff == 0
        case .poly1305(_, let opener):
            begin(opener, received)
            // libcrypto compares the tag in constant time.
            authentic = ft_aead_associate(opener, prefix.baseAddress!.assumingMemoryBound(to: UInt8.self), prefix.count) == 1
                && (signed.isEmpty || ft_aead_associate(opener, signed.baseAddress!.assumingMemoryBound(to: UInt8.self), signed.count) == 1)
                && ft_aead_open_end(opener, tag.assumingMemoryBound(to: UInt8.self)) == 1
        }
        guard authentic else { return false }
        received += 1
        return true
    }

    /// What a received prefix must look like on a tagged connection; the
    /// reason if it does not.
    static func problem(with p: FramePrefix) -> String? {
        let tagged = p.flags & taggedFlag != 0
        if tags(p.type) {
            guard tagged, p.length >= UInt32(tagSize) else {
                return "a \(p.type) frame without its tag: this connection's frames must be tagged with keys from the code (a relayed or injected frame?)"
            }
        } else if tagged {
            return "a tagged \(p.type) frame"
        }
        return nil
    }

    /// Starts the tag of the frame numbered `counter`.
    private func begin(_ ctx: OpaquePointer, _ counter: UInt64) {
        precondition(ft_aead_begin(ctx, nonce.of(counter)) == 1)
    }

    private static func hmac(_ head: UnsafeRawBufferPointer, _ rest: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                            counter: UInt64, key: SymmetricKey) -> (UInt64, UInt64) {
        var h = HMAC<SHA256>(key: key)
        withUnsafeBytes(of: counter.bigEndian) { h.update(data: $0) }
        h.update(data: head)
        if !rest.isEmpty { h.update(data: rest) }
        let mac = h.finalize()
        return mac.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }
}
