import CURing
import FTEngine

#if canImport(Glibc)
import Glibc
#endif

/// A directory the user named, held open as the walk found it.
///
/// Why: the walk goes down the tree by descriptors and never through a
/// link, but files are read later, by path. Anyone who can write a
/// directory in the tree could, in between, swap a subdirectory for a
/// symlink to somewhere else (`/etc`, another user's home) holding a file
/// of the same name, size and mtime (the owner of a file sets its mtime),
/// and a sender running as root would push that file instead. Files are
/// opened beneath this descriptor through no link at all, as the receiver
/// writes beneath its destination: a swapped path fails with ELOOP and
/// the file is left out and named. Links in the path the user typed are
/// theirs and are followed, once, when the root is opened.
final class SourceAnchor: Sendable {
    /// O_PATH, of the directory the walk read.
    let fd: CInt
    /// Bytes of the root's local path and its "/": what precedes a file's
    /// path beneath it.
    let prefixLength: Int

    /// Holds the directory open as `walked`; nil if it cannot be (out of
    /// descriptors: files are then opened by their paths, as before).
    init?(walked: CInt, local: String) {
        let fd = openat(walked, ".", FT_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.fd = fd
        prefixLength = local.utf8.count + 1
    }

    deinit { close(fd) }
}

/// Where a file of the source is: its path as the user sees it (messages,
/// and roots that are files), and the root it was walked from.
package struct SourcePath: Sendable, Equatable {
    package let path: String
    let anchor: SourceAnchor?

    init(_ path: String, under anchor: SourceAnchor? = nil) {
        self.path = path
        self.anchor = anchor
    }

    package static func == (a: SourcePath, b: SourcePath) -> Bool { a.path == b.path && a.anchor === b.anchor }

    /// Like `open(path, flags)`: a descriptor, or -1 with errno set.
    func open(_ flags: CInt) -> CInt {
        guard let anchor else { return Glibc.open(path, flags) }
        return path.withCString { ft_openat2(anchor.fd, $0 + anchor.prefixLength, UInt64(flags | O_NOFOLLOW), 0, Directory.beneath) }
    }

    /// Opens a file's parent, `bytes`: the first `length` bytes of `path`
    /// and a NUL. O_PATH, for `openat` of the file's name with O_NOFOLLOW.
    func openParent(_ bytes: UnsafePointer<CChar>, length: Int) -> CInt {
        let flags = FT_O_PATH | O_DIRECTORY | O_CLOEXEC
        guard let anchor else { return Glibc.open(bytes, flags) }
        guard length >= anchor.prefixLength else {
            return ft_openat2(anchor.fd, ".", UInt64(flags), 0, Directory.beneath)
        }
        return ft_openat2(anchor.fd, bytes + anchor.prefixLength, UInt64(flags), 0, Directory.beneath)
    }
}
