import FTWire

/// The AEAD that seals an `--encrypt` push. A sender offers the ciphers it
/// will use as feature bits in its hello; the receiver answers with exactly
/// one of them. A hello with `encrypt` and no cipher bit comes from an ft
/// that knew ChaCha20-Poly1305 only, and is read as offering that.
public enum Cipher: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case aes256GCM = "aes-256-gcm"
    case chacha20Poly1305 = "chacha20-poly1305"

    public var description: String { rawValue }

    package var feature: Features {
        switch self {
        case .aes256GCM: return .aes256GCM
        case .chacha20Poly1305: return .chacha20Poly1305
        }
    }

    /// The cipher bits of `features`, in the order of `allCases`.
    package static func named(in features: Features) -> [Cipher] {
        allCases.filter { features.contains($0.feature) }
    }

    /// What a sender's hello offers (the legacy reading included).
    package static func offered(by features: Features) -> [Cipher] {
        let named = named(in: features)
        return named.isEmpty && features.contains(.encrypt) ? [.chacha20Poly1305] : named
    }

    /// The receiver's pick: the first of `accepted` (its preference order)
    /// that the sender offered, or why there is none.
    package static func pick(offered: [Cipher], accepted: [Cipher]) -> Result<Cipher, CipherMismatch> {
        guard let c = accepted.first(where: offered.contains) else {
            return .failure(CipherMismatch(offered: offered, accepted: accepted))
        }
        return .success(c)
    }

    /// The sender's reading of the receiver's answer: the one cipher it
    /// chose, which must be one this side offered.
    package static func chosen(by receiver: Features, offered: [Cipher]) -> Result<Cipher, CipherMismatch> {
        let named = named(in: receiver)
        // An ft without cipher bits seals with ChaCha20-Poly1305.
        let choice = named.isEmpty ? [.chacha20Poly1305] : named
        guard choice.count == 1, offered.contains(choice[0]) else {
            return .failure(CipherMismatch(offered: offered, accepted: choice))
        }
        return .success(choice[0])
    }
}

package struct CipherMismatch: Error, Equatable, Sendable, CustomStringConvertible {
    package var offered: [Cipher]
    package var accepted: [Cipher]

    package var description: String {
        func list(_ c: [Cipher]) -> String { c.isEmpty ? "none" : c.map(\.rawValue).joined(separator: ", ") }
        return "no cipher in common: the sender offers \(list(offered)), the receiver takes \(list(accepted)) (see --cipher on both)"
    }
}
