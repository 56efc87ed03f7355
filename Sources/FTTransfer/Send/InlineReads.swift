import CURing
import Glibc

/// Reads a chunk on the loop thread when that cannot wait on a device.
///
/// On the ring, a read of a page-cached ext4 file completes inline, but a
/// read of a tmpfs file is handed to an io-wq worker: a thread hop and two
/// wake-ups per chunk. So the copy and sealed paths first read a chunk with
/// `preadv2(RWF_NOWAIT)` (one syscall when the pages are in memory,
/// `EAGAIN` when they are not); tmpfs, which has no RWF_NOWAIT, is read
/// plainly, since its pages are memory. Measured, 1 GiB from tmpfs into
/// memory, 9 alternating runs, twice: sender wall 0.85× unpinned, 0.86 –
/// 0.92× pinned, its CPU 0.77 – 0.93×; sealed (`--encrypt`, 7 runs) 0.83×
/// unpinned, 0.91× pinned.
/// Anything else goes to the ring as before: a file that needs the disk, a
/// filesystem without RWF_NOWAIT that is not tmpfs (NFS, FUSE: a plain
/// read could wait on the network), a short read (the ring's read reports
/// it).
struct InlineReads {
    /// The file last found on tmpfs, read plainly.
    private var plainFile: UInt32?
    /// The file last found without RWF_NOWAIT and not on tmpfs.
    private var ringFile: UInt32?

    /// Whether all of chunk `c` is now in `to`.
    mutating func read(_ source: SourceFile, into to: UnsafeMutableRawPointer, _ c: FileChunk) -> Bool {
        guard ringFile != source.id else { return false }
        var done = 0
        while done < c.length {
            let offset = Int64(c.offset) + Int64(done)
            let n = plainFile == source.id
                ? pread(source.fd, to + done, c.length - done, off_t(offset))
                : ft_pread_nowait(source.fd, to + done, c.length - done, offset)
            if n > 0 {
                done += n
                continue
            }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EOPNOTSUPP, plainFile != source.id {
                if ft_is_tmpfs(source.fd) != 0 {
                    plainFile = source.id
                    continue
                }
                ringFile = source.id
            }
            return false
        }
        return true
    }
}
