import Crypto
import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The one-time code a receiver prints and a sender proves it knows.
///
/// 12 characters of Crockford base32 (no i, l, o, u), grouped by four:
/// `k7mq-2fxp-93rd`, 60 bits, easy to read aloud. The code never crosses
/// the wire: each side sends HMAC-SHA256(code, role ‖ session ‖ both
/// nonces), so a proof is useless in any other session or direction.
package enum AuthCode {
    static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)

    /// A fresh random code.
    package static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let chars = (0..<12).map { _ in Character(Unicode.Scalar(alphabet[Int.random(in: 0..<32, using: &rng)])) }
        return String(chars[0..<4]) + "-" + String(chars[4..<8]) + "-" + String(chars[8..<12])
    }

    /// The code as keyed bytes: lower case, separators dropped, and the
    /// letters people confuse with digits read as those digits. nil if it
    /// is not a plausible code.
    package static func normalize(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        for b in text.lowercased().utf8 {
            switch b {
            case UInt8(ascii: "-"), UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): continue
            case UInt8(ascii: "o"): out.append(UInt8(ascii: "0"))
            case UInt8(ascii: "i"), UInt8(ascii: "l"): out.append(UInt8(ascii: "1"))
            default:
                guard alphabet.contains(b) else { return nil }
                out.append(b)
            }
        }
        return (8...64).contains(out.count) ? out : nil
    }

    package static func proof(code: [UInt8], role: Hello.Role, session: [UInt8], senderNonce: [UInt8], receiverNonce: [UInt8]) -> AuthProof {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: code))
        mac.update(data: Array("ft-auth-v1".utf8) + [role.rawValue])
        mac.update(data: session)
        mac.update(data: senderNonce)
        mac.update(data: receiverNonce)
        return AuthProof(mac: Array(mac.finalize()))
    }

    /// Constant-time equality of two proofs.
    package static func matches(_ a: AuthProof, _ b: AuthProof) -> Bool {
        guard a.mac.count == b.mac.count else { return false }
        var diff: UInt8 = 0
        for i in a.mac.indices { diff |= a.mac[i] ^ b.mac[i] }
        return diff == 0
    }

    static func randomBytes(_ n: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// The code from `--code-file PATH`, else from `FT_CODE`, else nil.
    /// Never from argv: a command line is visible to every local user.
    /// Why a code someone chose is easy to guess, or nil: few different
    /// characters (1111-1111-1111, abab-abab-abab) or a run up or down the
    /// alphabet (0123-4567-89ab). A made code has 12 random characters.
    package static func weakness(_ text: String) -> String? {
        guard let c = normalize(text) else { return nil }
        let distinct = Set(c).count
        if distinct < 6 { return "has only \(distinct) different characters" }
        let steps = zip(c, c.dropFirst()).map { Int($1) - Int($0) }
        if Set(steps).count == 1 { return "is a plain sequence" }
        return nil
    }

    package static func load(file: String?, warn: (String) -> Void) throws(TransferError) -> String? {
        if let file {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw .io(IOError(Errno(rawValue: errno), "read the code file", file)) }
            defer { close(fd) }
            var st = stat()
            if fstat(fd, &st) == 0, st.st_mode & 0o077 != 0 {
                warn("\(file) can be read by other users; chmod 600 it")
            }
            var buf = [UInt8](repeating: 0, count: 256)
            let n = read(fd, &buf, buf.count)
            let text = String(decoding: buf[..<max(0, n)], as: UTF8.self).trimmed
            guard normalize(text) != nil else { throw .source("\(file) does not hold a code like k7mq-2fxp-93rd") }
            return text
        }
        if let env = getenv("FT_CODE") {
            let text = String(cString: env).trimmed
            guard normalize(text) != nil else { throw .source("FT_CODE does not hold a code like k7mq-2fxp-93rd") }
            return text
        }
        return nil
    }
}
