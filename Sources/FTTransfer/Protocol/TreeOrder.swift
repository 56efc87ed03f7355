import FTWire

/// Checks, entry by entry across a whole push, that entries come in tree
/// order (`PeerPath.precedesInTree`), each strictly after the last, and that
/// nothing is announced beneath an entry that is not a directory. The walk
/// order is what makes this cheap: an entry's announced ancestors are all
/// ancestors of the entry before it, so a stack as deep as the tree is all
/// the memory it needs, whatever the push's size. A repeated entry, or one
/// announced again in a later batch, is out of order.
package struct TreeOrder: Sendable {
    private var last: [UInt8]?
    /// The announced ancestors of the last entry, and that entry, with kinds.
    private var stack: [(path: [UInt8], kind: ManifestEntry.Kind)] = []

    package init() {}

    /// Why `raw` (already a valid path) cannot come next, or nil.
    package mutating func admit(_ raw: [UInt8], kind: ManifestEntry.Kind) -> String? {
        if let last, !PeerPath.precedesInTree(last, raw) {
            let dup = last == raw
            return dup ? "'\(Escape.forMessage(bytes: raw))' announced twice"
                : "'\(Escape.forMessage(bytes: raw))' is out of order after '\(Escape.forMessage(bytes: last))' (entries come once each, in tree order)"
        }
        while let top = stack.last, !Self.isAncestor(top.path, of: raw) { stack.removeLast() }
        if let top = stack.last, top.kind != .directory {
            let what = top.kind == .symlink ? "a symlink" : "a file"
            return "'\(Escape.forMessage(bytes: raw))' needs '\(Escape.forMessage(bytes: top.path))' to be a directory, but it is announced as \(what)"
        }
        stack.append((raw, kind))
        last = raw
        return nil
    }

    static func isAncestor(_ a: [UInt8], of b: [UInt8]) -> Bool {
        b.count > a.count && b[a.count] == UInt8(ascii: "/") && Bytes.hasPrefix(b, a)
    }
}

/// What ft does with symlinks. Like rsync's `--safe-links`, the default
/// keeps a link only if its target, resolved as text from the link's own
/// directory, stays inside the tree that was pushed.
public enum LinkPolicy: String, Sendable, CaseIterable {
    /// Keep links whose target stays inside the pushed tree; skip the others.
    case safe
    /// Keep every link's target text as it is, as tar does.
    case all
    /// Skip every link.
    case none

    /// Whether a link at `path` pointing at `target` is kept.
    package func keeps(target: [UInt8], at path: PeerPath) -> Bool {
        keeps(target: target, depth: path.depth)
    }

    /// The same, for a link whose path has `depth` components.
    package func keeps(target: [UInt8], depth: Int) -> Bool {
        switch self {
        case .all: return true
        case .none: return false
        case .safe: return Self.staysInside(target: target, depth: depth)
        }
    }

    /// Resolves `target` lexically from the link's directory; false if it
    /// is absolute or climbs above the push's top directory (the first
    /// component of the link's path, which has `depth` components).
    package static func staysInside(target: [UInt8], depth linkDepth: Int) -> Bool {
        guard !target.isEmpty, target.first != UInt8(ascii: "/") else { return false }
        var depth = linkDepth - 1
        guard depth >= 1 else { return false }
        for part in target.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.elementsEqual([UInt8(ascii: ".")]) { continue }
            if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                depth -= 1
                if depth < 1 { return false }
            } else {
                depth += 1
            }
        }
        return true
    }
}
