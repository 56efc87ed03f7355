import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One thing the sender will push, and where its bytes come from.
public struct SourceItem: Sendable {
    public enum Origin: Sendable, Equatable {
        case file(String)
        case directory(String)
        case stdin
    }

    public var entry: ManifestEntry
    public var origin: Origin

    /// The wire path as text, for display.
    public var displayPath: String { Escape.forDisplay(bytes: entry.path) }
}

/// Turns command-line paths into manifest entries: each argument arrives
/// under its own name (like `scp -r`), directories recursively with empty
/// files and directories kept, mode and mtime recorded.
public enum SourceTree {
    public static let stdinArgument = "-"

    /// Walks `paths`. Symlinks and special files inside a tree are skipped
    /// with a warning: the receiver never creates them.
    public static func scan(_ paths: [String], stdinName: String = "stdin", warn: (String) -> Void = { _ in }) throws(TransferError) -> [SourceItem] {
        var items: [SourceItem] = []
        var topNames: [String: String] = [:]
        for arg in paths {
            if arg == stdinArgument {
                let name = try checkedName(stdinName, what: "--name")
                guard topNames.updateValue(arg, forKey: name) == nil else {
                    throw .source("two arguments would both arrive as '\(Escape.forDisplay(name))'")
                }
                items.append(SourceItem(
                    entry: ManifestEntry(fileID: UInt32(items.count), kind: .stdin, path: Array(name.utf8),
                                         mode: 0o644, size: ManifestEntry.unknownSize,
                                         mtimeSeconds: Int64(time(nil)), mtimeNanoseconds: 0),
                    origin: .stdin))
                continue
            }
            var st = stat()
            guard stat(arg, &st) == 0 else {
                throw .io(IOError(Errno(rawValue: errno), "cannot send", arg))
            }
            let name = try checkedName(baseName(of: arg), what: arg)
            if let other = topNames.updateValue(arg, forKey: name) {
                throw .source("'\(Escape.forDisplay(other))' and '\(Escape.forDisplay(arg))' would both arrive as '\(Escape.forDisplay(name))'")
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                items.append(item(id: items.count, wire: name, st: st, origin: .file(arg)))
            case S_IFDIR:
                items.append(item(id: items.count, wire: name, st: st, origin: .directory(arg)))
                try walk(arg, wire: name, into: &items, warn: warn)
            default:
                throw .source("cannot send '\(Escape.forDisplay(arg))': not a regular file or directory")
            }
        }
        guard items.count <= Manifest.maxEntries else {
            throw .source("\(items.count) entries is over the limit of \(Manifest.maxEntries) per push")
        }
        return items
    }

    static func item(id: Int, wire: String, st: stat, origin: SourceItem.Origin) -> SourceItem {
        let isDir = st.st_mode & S_IFMT == S_IFDIR
        return SourceItem(
            entry: ManifestEntry(
                fileID: UInt32(id), kind: isDir ? .directory : .file, path: Array(wire.utf8),
                mode: UInt32(st.st_mode & 0o7777), size: isDir ? 0 : UInt64(st.st_size),
                mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: UInt32(st.st_mtim.tv_nsec)),
            origin: origin)
    }

    private static func walk(_ dir: String, wire: String, into items: inout [SourceItem], warn: (String) -> Void) throws(TransferError) {
        guard let d = opendir(dir) else {
            throw .io(IOError(Errno(rawValue: errno), "read directory", dir))
        }
        var names: [[UInt8]] = []
        while let ent = readdir(d) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 })
            }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            names.append(name)
        }
        closedir(d)
        names.sort { $0.lexicographicallyPrecedes($1) }
        for raw in names {
            let local = dir + "/" + String(decoding: raw, as: UTF8.self)
            guard let text = String(validating: raw, as: UTF8.self) else {
                throw .source("cannot send '\(dir)/\(Escape.forDisplay(bytes: raw))': name is not valid UTF-8 (ft requires UTF-8 names)")
            }
            let wirePath = wire + "/" + text
            _ = try checkedName(wirePath, what: local)
            var st = stat()
            guard lstat(local, &st) == 0 else {
                throw .io(IOError(Errno(rawValue: errno), "stat", local))
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                items.append(item(id: items.count, wire: wirePath, st: st, origin: .file(local)))
            case S_IFDIR:
                items.append(item(id: items.count, wire: wirePath, st: st, origin: .directory(local)))
                try walk(local, wire: wirePath, into: &items, warn: warn)
            case S_IFLNK:
                warn("skipping symlink \(Escape.forDisplay(local)): ft does not create links on the receiver")
            default:
                warn("skipping \(Escape.forDisplay(local)): not a regular file or directory")
            }
        }
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
