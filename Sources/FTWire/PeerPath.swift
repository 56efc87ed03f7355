#if canImport(Glibc)
import Glibc
#endif

/// A path a peer asked us to write, after it passed every rule. Holding one
/// means: relative, `/`-separated, each component a plain name.
///
/// Checking the string is only the first gate. The receiver still opens each
/// component beneath its destination directory fd without following links,
/// so a path that is clean here cannot escape through the filesystem either.
public struct PeerPath: Hashable, Sendable, CustomStringConvertible {
    public static let maxPathBytes: UInt16 = 4096
    public static let maxComponentBytes = 255
    public static let maxDepth = 256

    /// The path as the peer sent it, checked. Equality, hashing, display
    /// and "is inside" work on these bytes in one pass, not component by
    /// component: a batch of deep paths costs its bytes, not depth² string
    /// comparisons.
    public let bytes: [UInt8]
    /// How many components the path has.
    public let depth: Int

    /// The names along the path, made when asked (to open directories):
    /// checking a path makes none of them.
    public var components: [String] {
        bytes.split(separator: UInt8(ascii: "/")).map { String(decoding: $0, as: UTF8.self) }
    }

    public var description: String { String(decoding: bytes, as: UTF8.self) }

    public var parent: PeerPath? {
        guard depth > 1, let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return nil }
        return PeerPath(unchecked: Array(bytes[..<slash]), depth: depth - 1)
    }

    public var name: String {
        let start = bytes.lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 } ?? 0
        return String(decoding: bytes[start...], as: UTF8.self)
    }

    init(unchecked bytes: [UInt8], depth: Int) {
        self.bytes = bytes
        self.depth = depth
    }

    public static func == (a: PeerPath, b: PeerPath) -> Bool { a.depth == b.depth && Bytes.equal(a.bytes, b.bytes) }

    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// The first component, as bytes.
    public var top: ArraySlice<UInt8> {
        bytes.firstIndex(of: UInt8(ascii: "/")).map { bytes[..<$0] } ?? bytes[...]
    }

    /// This path inside `directory`, a path of one component.
    public func inside(_ directory: PeerPath) -> PeerPath {
        precondition(directory.depth == 1)
        return PeerPath(unchecked: directory.bytes + [UInt8(ascii: "/")] + bytes, depth: depth + 1)
    }

    /// Whether this path is strictly beneath `dir`.
    public func isInside(_ dir: PeerPath) -> Bool {
        bytes.count > dir.bytes.count && bytes[dir.bytes.count] == UInt8(ascii: "/") && Bytes.hasPrefix(bytes, dir.bytes)
    }

    public enum Violation: Error, Equatable, Sendable, CustomStringConvertible {
        case empty
        case tooLong(Int)
        case absolute
        case notUTF8
        case controlCharacter(UInt32)
        case emptyComponent
        case dotComponent(String)
        case componentTooLong(Int)
        case tooDeep(Int)

        public var description: String {
            switch self {
            case .empty: return "empty path"
            case .tooLong(let n): return "path of \(n) bytes is over \(PeerPath.maxPathBytes)"
            case .absolute: return "absolute path"
            case .notUTF8: return "path is not valid UTF-8"
            case .controlCharacter(let c): return "control character U+\(hex4(c)) in path"
            case .emptyComponent: return "empty component (// or a trailing /)"
            case .dotComponent(let c): return "'\(c)' component"
            case .componentTooLong(let n): return "name of \(n) bytes is over \(PeerPath.maxComponentBytes)"
            case .tooDeep(let n): return "\(n) levels deep, over \(PeerPath.maxDepth)"
            }
        }
    }

    /// Checks raw peer bytes against every rule and returns the components.
    public static func validate(_ bytes: [UInt8]) throws(Violation) -> PeerPath {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= Int(maxPathBytes) else { throw .tooLong(bytes.count) }
        guard bytes[0] != UInt8(ascii: "/") else { throw .absolute }
        // Printable ASCII (nearly every name) is valid UTF-8 without
        // controls: the scalar-by-scalar checks are for the rest.
        if !Bytes.allPrintableASCII(bytes) {
            guard let text = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
            for scalar in text.unicodeScalars where isControl(scalar.value) {
                throw .controlCharacter(scalar.value)
            }
        }
        // One pass: each component is checked where it ends.
        let depth = try bytes.withUnsafeBufferPointer { (b) throws(Violation) -> Int in
            let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
            var depth = 0
            var start = 0
            var i = 0
            while i <= b.count {
                if i == b.count || b[i] == slash {
                    let n = i - start
                    guard n > 0 else { throw .emptyComponent }
                    guard n <= maxComponentBytes else { throw .componentTooLong(n) }
                    if b[start] == dot, n == 1 || (n == 2 && b[start + 1] == dot) {
                        throw .dotComponent(n == 1 ? "." : "..")
                    }
                    guard depth < maxDepth else { throw .tooDeep(depth + 1) }
                    depth += 1
                    start = i + 1
                }
                i += 1
            }
            return depth
        }
        return PeerPath(unchecked: bytes, depth: depth)
    }

    /// Checks a symlink target a peer sent: as hostile as a path (length,
    /// NUL, control characters, UTF-8), though it may be absolute or climb;
    /// whether such a link is kept is the receiver's link policy.
    public static func validateTarget(_ bytes: [UInt8]) throws(Violation) {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= Int(maxPathBytes) else { throw .tooLong(bytes.count) }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
        for scalar in text.unicodeScalars where isControl(scalar.value) {
            throw .controlCharacter(scalar.value)
        }
    }

    /// The order every push announces its entries in: component by
    /// component, each compared byte by byte, a directory before what is
    /// inside it. It is the order of a depth-first walk that visits each
    /// directory's names sorted by their bytes. Comparing raw paths with
    /// `/` counted below every other byte gives the same order.
    public static func precedesInTree(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        let slash = UInt8(ascii: "/")
        let common = Bytes.commonPrefix(a, b)
        guard common < a.count, common < b.count else { return a.count < b.count }
        let x = a[common], y = b[common]
        return (x == slash ? 0 : x) < (y == slash ? 0 : y)
    }

    /// Directories and files that hand over a login or run code when
    /// written into a home directory (croc CVE-2023-43617 wrote
    /// `.ssh/authorized_keys`). Refused unless the receiver allows them.
    public static let sensitiveDirectories: Set<String> = [".ssh", ".gnupg", ".aws", ".kube", ".docker", ".pki", "autostart"]
    public static let sensitiveFiles: Set<String> = [
        "authorized_keys", "authorized_keys2", ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile",
        ".zshrc", ".zprofile", ".zshenv", ".zlogin", ".login", ".cshrc", ".tcshrc", ".netrc", ".pgpass", ".xinitrc",
        ".xsession", ".xprofile", ".pam_environment", ".forward", ".rhosts", ".shosts",
    ]

    /// The first component that is a credential or start-up name, if any.
    public var sensitiveComponent: String? {
        bytes.withUnsafeBufferPointer { b in
            var start = 0
            for i in 0...b.count where i == b.count || b[i] == UInt8(ascii: "/") {
                defer { start = i + 1 }
                // Every sensitive name starts with "." or "a": most names are
                // passed without making a string of them.
                guard b[start] == UInt8(ascii: ".") || b[start] == UInt8(ascii: "a") else { continue }
                let c = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
                if Self.sensitiveDirectories.contains(c) { return c }
                if i == b.count, Self.sensitiveFiles.contains(c) { return c }
            }
            return nil
        }
    }

    /// C0, DEL and C1: none of them belongs in a file name, and C1 holds
    /// CSI (U+009B), which some terminals obey.
    static func isControl(_ v: UInt32) -> Bool {
        v < 0x20 || (0x7F...0x9F).contains(v)
    }
}

func hex4(_ v: UInt32) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
}

/// Byte-array comparisons through memcmp and unsafe buffers: a batch holds
/// up to a MiB of paths, each looked at several times, and element-wise
/// generic loops over `[UInt8]` cost several times as much.
package enum Bytes {
    package static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
    }

    package static func hasPrefix(_ a: [UInt8], _ prefix: [UInt8]) -> Bool {
        guard a.count >= prefix.count else { return false }
        guard !prefix.isEmpty else { return true }
        return a.withUnsafeBytes { x in prefix.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, y.count) == 0 } }
    }

    /// How many leading bytes `a` and `b` share.
    package static func commonPrefix(_ a: [UInt8], _ b: [UInt8]) -> Int {
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                let n = min(x.count, y.count)
                var i = 0
                // Eight bytes at a time while they agree.
                while i + 8 <= n, UnsafeRawPointer(x.baseAddress! + i).loadUnaligned(as: UInt64.self)
                        == UnsafeRawPointer(y.baseAddress! + i).loadUnaligned(as: UInt64.self) { i += 8 }
                while i < n, x[i] == y[i] { i += 1 }
                return i
            }
        }
    }

    package static func allPrintableASCII(_ a: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { b in
            // 0x20...0x7E, as one unsigned comparison.
            for byte in b where byte &- 0x20 >= 0x5F { return false }
            return true
        }
    }
}
