/// `--exclude`, `--include` and `--exclude-from`: which entries of a pushed
/// tree stay home. Patterns are gitignore's, matched against the path
/// below each pushed directory (for `ft send host photos/`, the entry
/// `photos/2024/a.jpg` is matched as `2024/a.jpg`):
///
/// - `*` matches anything but `/`, `?` one character but `/`, `[abc]`,
///   `[a-z]` and `[!abc]` one of (or none of) a set.
/// - `**` as a whole component matches any number of components:
///   `**/cache` at any depth, `logs/**` everything inside `logs`,
///   `a/**/b` with any directories between.
/// - A pattern with no `/` but a trailing one matches a name at any depth;
///   a `/` at the start or in the middle anchors it to the top
///   (`/build` is only the top-level `build`, `doc/*.txt` only there).
/// - A trailing `/` matches directories only.
/// - The last pattern that matches decides; `--include` (or `!pattern`
///   in a file) takes back what an earlier exclude matched.
/// - An excluded directory is not walked, so nothing inside it can be
///   included again (as in git).
///
/// Pure: tested by `PathFilterTests` without a file system.
public struct PathFilter: Sendable, Equatable {
    public struct Rule: Sendable, Equatable {
        public var include: Bool
        var components: [[UInt8]]
        var anchored: Bool
        var directoryOnly: Bool
        /// As given, for messages.
        public var text: String
    }

    public private(set) var rules: [Rule] = []

    public init() {}

    public var isEmpty: Bool { rules.isEmpty }

    public enum PatternError: Error, Equatable, CustomStringConvertible {
        case empty
        case unclosedBracket(String)
        public var description: String {
            switch self {
            case .empty: return "an empty pattern matches nothing"
            case .unclosedBracket(let p): return "'\(p)' has a '[' without its ']'"
            }
        }
    }

    public mutating func add(_ pattern: String, include: Bool) throws(PatternError) {
        var p = Array(pattern.utf8)
        guard !p.isEmpty else { throw .empty }
        var directoryOnly = false
        while p.count > 1, p.last == UInt8(ascii: "/") {
            p.removeLast()
            directoryOnly = true
        }
        var anchored = false
        if p.first == UInt8(ascii: "/") {
            p.removeFirst()
            anchored = true
        }
        guard !p.isEmpty else { throw .empty }
        if p.contains(UInt8(ascii: "/")) { anchored = true }
        let components = p.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map(Array.init)
        for c in components where !Self.bracketsClose(c) { throw .unclosedBracket(pattern) }
        rules.append(Rule(include: include, components: components, anchored: anchored, directoryOnly: directoryOnly, text: pattern))
    }

    /// Reads `--exclude-from` text: one pattern per line, `#` comments and
    /// blank lines skipped, `!pattern` includes, `\#` and `\!` escape.
    public mutating func addLines(_ text: String) throws(PatternError) {
        // "\r\n" is one Character in Swift: both end a line.
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            var line = String(raw)
            while line.hasSuffix(" ") && !line.hasSuffix("\\ ") { line.removeLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("!") {
                try add(String(line.dropFirst()), include: true)
            } else if line.hasPrefix("\\#") || line.hasPrefix("\\!") {
                try add(String(line.dropFirst()), include: false)
            } else {
                try add(line, include: false)
            }
        }
    }

    /// Whether the entry at `path` (relative to its pushed directory) stays
    /// home. The pushed directory itself is never excluded.
    public func excludes(_ path: [UInt8], isDirectory: Bool) -> Bool {
        guard !rules.isEmpty, !path.isEmpty else { return false }
        let parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map(Array.init)
        for rule in rules.reversed() where !(rule.directoryOnly && !isDirectory) {
            if Self.matches(rule, parts) { return !rule.include }
        }
        return false
    }

    static func matches(_ rule: Rule, _ parts: [[UInt8]]) -> Bool {
        if rule.anchored { return matchComponents(rule.components[...], parts[...]) }
        // Unanchored: one component, matched against the name.
        guard let name = parts.last else { return false }
        return rule.components.count == 1 && glob(rule.components[0][...], name[...])
    }

    static func matchComponents(_ pattern: ArraySlice<[UInt8]>, _ parts: ArraySlice<[UInt8]>) -> Bool {
        guard let first = pattern.first else { return parts.isEmpty }
        if first == Array("**".utf8) {
            let rest = pattern.dropFirst()
            // `logs/**`: everything inside, not logs itself.
            if rest.isEmpty { return !parts.isEmpty }
            var at = parts.startIndex
            while at <= parts.endIndex {
                if matchComponents(rest, parts[at...]) { return true }
                at += 1
            }
            return false
        }
        guard let part = parts.first, glob(first[...], part[...]) else { return false }
        return matchComponents(pattern.dropFirst(), parts.dropFirst())
    }

    /// `*`, `?` and brackets within one component.
    static func glob(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        var pi = p.startIndex
        var si = s.startIndex
        var starP: ArraySlice<UInt8>.Index?
        var starS = s.startIndex
        while si < s.endIndex {
            if pi < p.endIndex {
                let c = p[pi]
                if c == UInt8(ascii: "*") {
                    starP = pi
                    starS = si
                    pi += 1
                    continue
                }
                if c == UInt8(ascii: "?") {
                    pi += 1
                    si += 1
                    continue
                }
                if c == UInt8(ascii: "["), let (matched, next) = bracket(p, pi, s[si]) {
                    if matched {
                        pi = next
                        si += 1
                        continue
                    }
                } else if c == UInt8(ascii: "\\"), pi + 1 < p.endIndex {
                    if p[pi + 1] == s[si] {
                        pi += 2
                        si += 1
                        continue
                    }
                } else if c == s[si] {
                    pi += 1
                    si += 1
                    continue
                }
            }
            guard let sp = starP else { return false }
            pi = sp + 1
            starS += 1
            si = starS
        }
        while pi < p.endIndex, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.endIndex
    }

    /// Matches `c` against the bracket expression at `p[at]`; returns
    /// whether it matched and the index after `]`.
    static func bracket(_ p: ArraySlice<UInt8>, _ at: ArraySlice<UInt8>.Index, _ c: UInt8) -> (Bool, ArraySlice<UInt8>.Index)? {
        var i = at + 1
        var negate = false
        if i < p.endIndex, p[i] == UInt8(ascii: "!") || p[i] == UInt8(ascii: "^") {
            negate = true
            i += 1
        }
        var matched = false
        var first = true
        while i < p.endIndex {
            if p[i] == UInt8(ascii: "]"), !first { return (matched != negate, i + 1) }
            first = false
            if i + 2 < p.endIndex, p[i + 1] == UInt8(ascii: "-"), p[i + 2] != UInt8(ascii: "]") {
                if p[i] <= c && c <= p[i + 2] { matched = true }
                i += 3
            } else {
                if p[i] == c { matched = true }
                i += 1
            }
        }
        return nil
    }

    static func bracketsClose(_ c: [UInt8]) -> Bool {
        var i = c.startIndex
        while i < c.endIndex {
            if c[i] == UInt8(ascii: "\\") {
                i += 2
                continue
            }
            if c[i] == UInt8(ascii: "["), bracket(c[...], i, 0) == nil { return false }
            i += 1
        }
        return true
    }
}
