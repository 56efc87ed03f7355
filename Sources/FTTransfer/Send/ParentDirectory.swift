import CURing

#if canImport(Glibc)
import Glibc
#endif

/// Opens files through a held descriptor of their parent directory, kept
/// while consecutive files share it.
///
/// Why: the walk lists a directory's files together, so a small-files
/// frame's files are mostly siblings. Opened by full path, each open walks
/// every component again. `openat` from the parent looks up one name: on
/// 100,000 small files the sender's openat share of perf samples fell
/// from 15.3% to 12.7%, and `tools/bench-ab` gave 0.96× the sender's CPU
/// and 0.98× its wall time (11 runs, unpinned; within this VM's noise on
/// the receiver).
///
/// The parent is opened with O_PATH, beneath the file's root and through
/// no link as `SourcePath.open` would resolve it, and the name with
/// O_NOFOLLOW, so what is opened and what errors come back do not change;
/// a parent that cannot be held falls back to the file's own open. Loop
/// thread only.
final class ParentDirectory {
    /// The held parent's path and a NUL. Compared with memcmp: through
    /// String's views the comparison cost as much as the walk it saved.
    private var parent: [CChar] = []
    private var anchor: SourceAnchor?
    private var fd: CInt = -1

    deinit { if fd >= 0 { close(fd) } }

    /// Like `open(path, flags)`: a descriptor, or -1 with errno set.
    func open(_ source: SourcePath, _ flags: CInt) -> CInt {
        source.path.withCString { p in
            guard let slash = strrchr(p, CInt(UInt8(ascii: "/"))), UnsafePointer(slash) != p else { return source.open(flags) }
            let length = UnsafePointer(slash) - p
            if fd < 0 || anchor !== source.anchor || parent.count != length + 1 || memcmp(parent, p, length) != 0 {
                if fd >= 0 { close(fd) }
                parent = Array(UnsafeBufferPointer(start: p, count: length)) + [0]
                anchor = source.anchor
                fd = source.openParent(parent, length: length)
                guard fd >= 0 else { return source.open(flags) }
            }
            return openat(fd, slash + 1, source.anchor == nil ? flags : flags | O_NOFOLLOW)
        }
    }
}
