import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One thing the sender will push, and where its bytes come from.
package struct SourceItem: Sendable {
    package enum Origin: Sendable, Equatable {
        /// Bytes read from this file.
        case file(SourcePath)
        /// Nothing to read: a directory, a symlink (its target is in the
        /// entry), a hard link (another entry's bytes).
        case none
        case stdin
    }

    package var entry: ManifestEntry
    package var origin: Origin

    package init(entry: ManifestEntry, origin: Origin) {
        self.entry = entry
        self.origin = origin
    }

    /// The wire path as text, for display.
    package var displayPath: String { Escape.forDisplay(bytes: entry.path) }

    package var localPath: SourcePath? {
        if case .file(let p) = origin { return p }
        return nil
    }
}

/// What a scan does with what it finds.
package struct ScanOptions: Sendable {
    package var stdinName = "stdin"
    package var links = LinkPolicy.safe
    /// Keep uid and gid in the entries.
    package var owner = false
    /// Files with holes travel as extents.
    package var sparse = true
    /// What stays home (--exclude, --include, --exclude-from).
    package var filter = PathFilter()

    package init() {}
}

/// The command line's paths, each arriving under its own name (like
/// `scp -r`): checked before anything connects, so a typo fails at once.
package struct SourceRoots: Sendable {
    package static let stdinArgument = "-"

    package struct Root: Sendable {
        /// The name it arrives under.
        package var name: [UInt8]
        /// Where it is here; nil for stdin.
        package var local: String?
        package var isDirectory: Bool
    }

    /// In tree order of their names, as the walk announces them.
    package let roots: [Root]

    package init(_ paths: [String], stdinName: String) throws(TransferError) {
        var roots: [Root] = []
        var topNames: [String: String] = [:]
        for arg in paths {
            if arg == Self.stdinArgument {
                let name = try Self.checkedName(stdinName, what: "--name")
                guard topNames.updateValue(arg, forKey: name) == nil else {
                    throw .source("two arguments would both arrive as '\(Escape.forDisplay(name))'")
                }
                roots.append(Root(name: Array(name.utf8), local: nil, isDirectory: false))
                continue
            }
            var st = stat()
            guard stat(arg, &st) == 0 else { throw .io(IOError(Errno(rawValue: errno), "cannot send", arg)) }
            let name = try Self.checkedName(Self.baseName(of: arg), what: arg)
            if let other = topNames.updateValue(arg, forKey: name) {
                throw .source("'\(Escape.forDisplay(other))' and '\(Escape.forDisplay(arg))' would both arrive as '\(Escape.forDisplay(name))'")
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG: roots.append(Root(name: Array(name.utf8), local: arg, isDirectory: false))
            case S_IFDIR: roots.append(Root(name: Array(name.utf8), local: arg, isDirectory: true))
            default: throw .source("cannot send '\(Escape.forDisplay(arg))': not a regular file or directory")
            }
        }
        self.roots = roots.sorted { PeerPath.precedesInTree($0.name, $1.name) }
    }

    /// The last component of a path as the user wrote it; for "." or "..",
    /// the real directory's name.
    static func baseName(of path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        let last = p.split(separator: "/").last.map(String.init) ?? String(p)
        if last == "." || last == ".." || last == "/" {
            if let real = realpath(path, nil) {
                defer { free(real) }
                let r = String(decoding: UnsafeRawBufferPointer(start: real, count: strlen(real)), as: UTF8.self)
                return r.split(separator: "/").last.map(String.init) ?? "root"
            }
        }
        return last
    }

    /// Checks a wire path by the receiver's own rules, so a bad name fails
    /// here with a clear message instead of as a refusal from the peer.
    static func checkedName(_ wire: String, what: String) throws(TransferError) -> String {
        do {
            _ = try PeerPath.validate(Array(wire.utf8))
        } catch {
            throw .source("cannot send '\(Escape.forDisplay(what))': \(error)")
        }
        return wire
    }
}
