import FTEngine
import FTWire

/// Writes one small-files frame's files on the offload thread, each
/// already verified in memory (`WholeFile`: complete under its final name
/// or not there at all).
///
/// Why off the loop: creating a file is five synchronous syscalls (open
/// O_TMPFILE, pwrite, futimens, linkat, close), about 20 µs each time on
/// tmpfs and unbounded on a disk busy with its journal; on the loop they
/// held every other session for as long. Here they also overlap the loop's
/// own work (reading, MACs, hashing the next frame) on a second core.
/// Batching them as ring operations instead was measured slower: 25-27 µs
/// per file against 20.6 µs (`tools/bench-perfile`), as OPENAT with
/// O_TMPFILE and LINKAT are punted to io-wq workers.
enum SmallStoreJob {
    struct File: Sendable {
        let id: UInt32
        let bytes: [UInt8]
        let entry: ManifestEntry
        let name: String
        /// Opened beneath the destination by the loop, for this frame.
        let dir: Directory
        let display: String
        let owner: Owner?
        /// A later entry is a hard link to this one: report its inode.
        let wantsInode: Bool
        let digest: Digest128?
    }

    struct Owner: Sendable {
        let uid: UInt32
        let gid: UInt32
    }

    enum Outcome: Sendable {
        case stored(inode: (dev: UInt64, ino: UInt64)?)
        case failed(IOError)
    }

    /// Outcomes in `files`' order; stops at the first failure (the push
    /// fails with it, as it would have on the loop).
    static func run(_ files: [File], overwrite: Bool) -> [Outcome] {
        var out: [Outcome] = []
        out.reserveCapacity(files.count)
        for f in files {
            do throws(IOError) {
                try WholeFile.write(f.bytes, entry: f.entry, name: f.name, in: f.dir, overwrite: overwrite,
                                    display: f.display, owner: f.owner.map { ($0.uid, $0.gid) })
                var inode: (dev: UInt64, ino: UInt64)?
                if f.wantsInode, let st = try? f.dir.status(of: f.name) {
                    inode = (UInt64(st.st_dev), UInt64(st.st_ino))
                }
                out.append(.stored(inode: inode))
            } catch {
                out.append(.failed(error))
                break
            }
        }
        return out
    }
}
