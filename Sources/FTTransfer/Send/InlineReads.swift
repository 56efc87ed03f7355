import CURing
import FTEngine
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Reads on the loop thread as far as that cannot wait on a device; the
/// caller puts the rest on the ring. Both the small files (`SmallReads`)
/// and the copy and sealed paths' chunks (`ChunkWriter`) read this way.
///
/// Each read is first tried with `preadv2(RWF_NOWAIT)`: one syscall when
/// the pages are in memory, `EAGAIN` when they are not. tmpfs has no
/// RWF_NOWAIT and is read plainly, since its pages are memory; on the ring
/// its reads went to an io-wq worker, a thread hop and two wake-ups per
/// read (page-cached ext4 reads complete inline there). Measured for
/// chunks, 1 GiB from tmpfs into memory, 9 alternating runs, twice: sender
/// wall 0.85× unpinned, 0.86 – 0.92× pinned, its CPU 0.77 – 0.93×; sealed
/// (`--encrypt`, 7 runs) 0.83× unpinned, 0.91× pinned. Any other
/// filesystem without RWF_NOWAIT (NFS, FUSE: a plain read could wait on
/// the network) is left to the ring.
struct InlineReads {
    enum Outcome: Equatable {
        /// All `count` bytes are in.
        case complete
        /// The rest would wait: read it on the ring.
        case wouldWait
        /// The file ended first (it shrank).
        case ended
        case failed(Errno)
    }

    /// tmpfs devices: read plainly.
    private var plainDevices = Set<UInt64>()
    /// Other devices without RWF_NOWAIT: everything goes to the ring.
    private var ringDevices = Set<UInt64>()

    /// Reads the `count` bytes at `offset` of `fd` (on `device`) into `to`,
    /// from `done` on, advancing `done` by what it read.
    mutating func read(_ fd: CInt, device: UInt64, into to: UnsafeMutableRawPointer, count: Int, at offset: Int64,
                       done: inout Int) -> Outcome {
        guard !ringDevices.contains(device) else { return .wouldWait }
        var plain = plainDevices.contains(device)
        while done < count {
            let n = plain ? pread(fd, to + done, count - done, off_t(offset) + off_t(done))
                          : ft_pread_nowait(fd, to + done, count - done, offset + Int64(done))
            if n > 0 {
                done += n
                continue
            }
            if n == 0 { return .ended }
            switch errno {
            case EINTR: continue
            case EAGAIN where !plain: return .wouldWait
            case EOPNOTSUPP where !plain:
                guard ft_is_tmpfs(fd) != 0 else {
                    ringDevices.insert(device)
                    return .wouldWait
                }
                plainDevices.insert(device)
                plain = true
            default:
                return .failed(Errno(rawValue: errno))
            }
        }
        return .complete
    }
}
