import FTEngine
import FTWire

/// Writes one small-files frame's files on an offload lane, each
/// already verified in memory (`WholeFile`: complete under its final name
/// or not there at all), looking up their directories there too: the loop
/// makes no filesystem call for a small file.
///
/// Why off the loop: creating a file is five synchronous syscalls (open
/// O_TMPFILE, pwrite, futimens, linkat, close), about 20 µs each time on
/// tmpfs and unbounded on a disk busy with its journal; on the loop they
/// held every other session for as long. Here they also overlap the loop's
/// own work (reading, MACs, hashing the next frame) on a second core.
/// Batching them as ring operations instead was measured slower: 25-27 µs
/// per file against 20.6 µs (`tools/bench-perfile`), as OPENAT with
/// O_TMPFILE and LINKAT are punted to io-wq workers.
///
/// Frames go to lanes side by side (`Offload.runSideBySide`): a frame's
/// creates need nothing from another frame's (directories are made when
/// the batch is reviewed; a hard link waits for its source to settle),
/// and most of a create's kernel work is per inode. Two lanes against one,
/// 2 cores: 10,000 × 4 KiB 0.88×, 100,000 × 0.5-1 KiB 0.88× the wall time
/// (`tools/bench-ab`, 9 and 5 runs).
enum SmallStoreJob {
    struct File: Sendable {
        let id: UInt32
        let bytes: [UInt8]
        let entry: ManifestEntry
        /// Beneath the destination, or inside `stage`.
        let path: PeerPath
        /// The stage directory it is built in (`Stage`): there it is
        /// created under its name, not linked.
        let stage: PeerPath?
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

    struct Result: Sendable {
        /// In `files`' order; the first failure ends the list (the push
        /// fails with it, as it would have on the loop).
        var outcomes: [Outcome] = []
        /// The directories looked up outside a stage, for the session's
        /// stale-partial sweep.
        var directories: [(PeerPath, Directory)] = []
    }

    /// Each directory is looked up once per frame (`Directory.parent`).
    /// Files are borrowed from the array, never copied out of it: a copy
    /// retains and releases each of its six references, which was 3% of a
    /// receiver's samples on 100,000 files.
    static func run(_ files: [File], in destination: Directory, overwrite: Bool) -> Result {
        var out = Result()
        out.outcomes.reserveCapacity(files.count)
        var dirs: [PeerPath: Directory] = [:]
        // Through the buffer: the array's subscript still copied each file
        // into the borrowing call. Samples under a File copy or destroy,
        // one-core receiver of 100,000 files: 1.83% -> 1.24% (the rest is
        // the array's own deinit).
        files.withUnsafeBufferPointer { files in
            for i in files.indices {
                do throws(IOError) {
                    let outcome = try store(files[i], in: destination, overwrite: overwrite, dirs: &dirs, out: &out)
                    out.outcomes.append(outcome)
                } catch {
                    out.outcomes.append(.failed(error))
                    break
                }
            }
        }
        return out
    }

    private static func store(_ f: borrowing File, in destination: Directory, overwrite: Bool,
                              dirs: inout [PeerPath: Directory], out: inout Result) throws(IOError) -> Outcome {
        let (dir, new) = try destination.parent(of: f.path, inside: f.stage, create: true, cache: &dirs)
        if new, f.stage == nil, let parent = f.path.parent { out.directories.append((parent, dir)) }
        let name = f.path.name
        try WholeFile.write(f.bytes, entry: f.entry, name: name, in: dir, overwrite: overwrite, direct: f.stage != nil,
                            display: f.display, owner: f.owner.map { ($0.uid, $0.gid) })
        guard f.wantsInode, let st = try? dir.status(of: name) else { return .stored(inode: nil) }
        return .stored(inode: (UInt64(st.st_dev), UInt64(st.st_ino)))
    }
}
