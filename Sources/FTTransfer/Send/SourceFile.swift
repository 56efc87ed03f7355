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
    /// end. `via`: through its parent's held descriptor.
    static func open(_ item: SourceItem, sequential: Bool = true, via parent: ParentDirectory? = nil) throws(TransferError) -> CInt {
        guard case .file(let path) = item.origin else { preconditionFailure("not a file") }
        let flags = O_RDONLY | O_CLOEXEC
        let fd = parent?.open(path, flags) ?? Glibc.open(path, flags)
        guard fd >= 0 else { throw .io(IOError(Errno(rawValue: errno), "open", path)) }
        if sequential { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) }
        return fd
    }

    /// Fails if the open file no longer has the size and mtime the manifest
    /// announced: its bytes would not match what the receiver was promised.
    /// Returns what fstat said (nil if it failed: then nothing is known).
    @discardableResult
    static func checkUnchanged(_ fd: CInt, _ item: SourceItem) throws(TransferError) -> stat? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        guard UInt64(st.st_size) == item.entry.size, Int64(st.st_mtim.tv_sec) == item.entry.mtimeSeconds,
              UInt32(st.st_mtim.tv_nsec) == item.entry.mtimeNanoseconds else {
            throw .source("'\(item.displayPath)' changed while being sent; send it again")
        }
        return st
    }

    /// A small file, open and checked against the manifest; with the
    /// device it is on.
    static func openWhole(_ item: SourceItem, via parent: ParentDirectory) throws(TransferError) -> (fd: CInt, device: UInt64) {
        let fd = try open(item, sequential: false, via: parent)
        do throws(TransferError) {
            return (fd, try checkUnchanged(fd, item).map { UInt64($0.st_dev) } ?? 0)
        } catch {
            close(fd)
            throw error
        }
    }
}
