import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A file whose chunks are going out, open for reading until its last
/// chunk left (and, with data streams, until it is acknowledged).
final class SourceFile {
    let id: UInt32
    let fd: CInt
    /// Hashes what passes through memory (copy, zc and sealed paths); nil
    /// when verification is off or a helper hashes ahead.
    let hasher: StreamHasher?

    /// The filesystem it is on (for `InlineReads`), asked once.
    private(set) lazy var device: UInt64 = {
        var st = stat()
        return fstat(fd, &st) == 0 ? UInt64(st.st_dev) : 0
    }()

    init(id: UInt32, fd: CInt, hasher: StreamHasher?) {
        self.id = id
        self.fd = fd
        self.hasher = hasher
    }

    deinit { close(fd) }

    /// Opens `item`'s file; `sequential`: it is read in chunks, start to
    /// end. `via`: through its parent's held descriptor. The descriptor
    /// blocks again (big files are read on the ring too).
    static func open(_ item: SourceItem, sequential: Bool = true, via parent: ParentDirectory? = nil) throws(TransferError) -> CInt {
        guard case .file(let path) = item.origin else { preconditionFailure("not a file") }
        let fd: CInt
        do { fd = try openRegular(path, via: parent).fd } catch { throw .io(error) }
        blocking(fd)
        if sequential { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) }
        return fd
    }

    /// Opens a file of the source for reading, and refuses one that is no
    /// longer a regular file; returns what fstat said of it.
    ///
    /// Why: the tree is walked ahead of the reads, and a file the walk saw
    /// may since have been replaced, by its owner or by anyone who can
    /// write its directory, with a fifo, whose plain open waits for a
    /// writer: on the loop thread, forever. O_NONBLOCK makes that open
    /// return, and O_NOCTTY keeps a terminal from becoming ours. A regular
    /// file's plain reads ignore O_NONBLOCK, but io_uring's do not (a read
    /// of a page not in memory fails with EAGAIN instead of waiting): a
    /// descriptor that goes to the ring is made `blocking` first.
    ///
    /// A file of a walked tree is opened beneath its root through no link
    /// (`SourceAnchor` says why): ELOOP means a directory on its path, or
    /// the file, was swapped for a symlink.
    static func openRegular(_ source: SourcePath, via parent: ParentDirectory? = nil) throws(IOError) -> (fd: CInt, info: stat) {
        let flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY
        let path = source.path
        let fd = parent?.open(source, flags) ?? source.open(flags)
        guard fd >= 0 else {
            let e = Errno(rawValue: errno)
            guard e == .tooManySymbolicLinkLevels, source.anchor != nil else { throw IOError(e, "open", path) }
            throw IOError(e, "open", path, reason: "it, or a directory on its path, is now a symlink (it was replaced after the tree was walked)")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = IOError(Errno(rawValue: errno), "fstat", path)
            close(fd)
            throw e
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw IOError(.invalidArgument, "open", path, reason: "no longer a regular file (it was replaced after the tree was walked)")
        }
        return (fd, st)
    }

    /// Clears the O_NONBLOCK that `openRegular` set.
    static func blocking(_ fd: CInt) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0, flags & O_NONBLOCK != 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
    }

    /// Fails if the open file no longer has the size and mtime the manifest
    /// announced: its bytes would not match what the receiver was promised.
    /// Returns what fstat said (nil if it failed: then nothing is known).
    @discardableResult
    static func checkUnchanged(_ fd: CInt, _ item: SourceItem) throws(TransferError) -> stat? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        try checkUnchanged(st, item)
        return st
    }

    private static func checkUnchanged(_ st: stat, _ item: SourceItem) throws(TransferError) {
        guard UInt64(st.st_size) == item.entry.size, Int64(st.st_mtim.tv_sec) == item.entry.mtimeSeconds,
              UInt32(st.st_mtim.tv_nsec) == item.entry.mtimeNanoseconds else {
            throw .source("'\(item.displayPath)' changed while being sent; send it again")
        }
    }

    /// A small file, open and checked against the manifest; with the
    /// device it is on. Its descriptor is still O_NONBLOCK: `SmallReads`
    /// reads it plainly, or makes it `blocking` before the ring does.
    static func openWhole(_ item: SourceItem, via parent: ParentDirectory) throws(TransferError) -> (fd: CInt, device: UInt64) {
        guard case .file(let path) = item.origin else { preconditionFailure("not a file") }
        let fd: CInt, st: stat
        do { (fd, st) = try openRegular(path, via: parent) } catch { throw .io(error) }
        do throws(TransferError) {
            try checkUnchanged(st, item)
            return (fd, UInt64(st.st_dev))
        } catch {
            close(fd)
            throw error
        }
    }
}
