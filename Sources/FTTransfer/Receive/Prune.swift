import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `--delete`: once every entry of a pushed directory has been announced,
/// what the directory holds beyond those names goes. Runs on its
/// session's own queue (`PushSession.ownQueue`: a removed subtree may be
/// large). It works from the directory's own fd (opened beneath the
/// destination without following links) and never follows a link: names
/// are unlinked as they are, subdirectories are opened with `O_NOFOLLOW`
/// and emptied from their own fds. ft's own
/// part and map files (`.ft-…`) stay: they belong to pushes in progress or
/// to be resumed.
enum Prune {
    struct Outcome: Sendable {
        /// Entries removed (a removed directory counts its contents too),
        /// or that would be in a dry run.
        var count: UInt64 = 0
        /// The first few, for the log (escaped for display).
        var names: [String] = []
        var failures: [String] = []
    }

    static let namesKept = 50

    /// Removes (or, `dryRun`, counts) what `dir` holds that `keep` does not
    /// name. Takes ownership of `dir`.
    /// `keepOwn: false` removes ft's own files there too.
    static func run(_ dir: CInt, display: String, keep: Set<[UInt8]>, dryRun: Bool, keepOwn: Bool = true) -> Outcome {
        ReceiveFault.slow(.prune)
        var out = Outcome()
        defer { close(dir) }
        for name in names(dir) where !keep.contains(name) && !(keepOwn && name.starts(with: Array(".ft-".utf8))) {
            remove(name, in: dir, display: display + "/" + String(decoding: name, as: UTF8.self), dryRun: dryRun, &out)
        }
        return out
    }

    /// Names are bytes, as the directory holds them: one that is not UTF-8
    /// (which no push can name) is still removed by its own name.
    private static func remove(_ name: [UInt8], in dir: CInt, display: String, dryRun: Bool, _ out: inout Outcome) {
        var st = stat()
        guard withCName(name, { fstatat(dir, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            let sub = withCName(name) { openat(dir, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            guard sub >= 0 else {
                out.failures.append("\(Escape.forDisplay(display)): \(IOError(Errno(rawValue: errno), "open").description)")
                return
            }
            for child in names(sub) {
                remove(child, in: sub, display: display + "/" + String(decoding: child, as: UTF8.self), dryRun: dryRun, &out)
            }
            close(sub)
        }
        if !dryRun, withCName(name, { unlinkat(dir, $0, st.st_mode & S_IFMT == S_IFDIR ? AT_REMOVEDIR : 0) }) != 0 {
            out.failures.append("\(Escape.forDisplay(display)): \(IOError(Errno(rawValue: errno), "remove").description)")
            return
        }
        out.count += 1
        if out.names.count < namesKept { out.names.append(Escape.forDisplay(display)) }
    }

    private static func names(_ dir: CInt) -> [[UInt8]] {
        let list = NameList(fd: dir)
        return (0..<list.count).map { list[$0] }
    }
}
