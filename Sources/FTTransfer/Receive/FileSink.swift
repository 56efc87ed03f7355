import FTEngine
import SystemPackage
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Where one incoming file's bytes land: a temp file created beside its
/// final name (or stdout), hashed as the bytes arrive. Only `commit` puts it
/// under its final name, after the hash matched.
final class FileSink {
    /// Owned, closed in deinit (except stdout).
    let fd: CInt
    let directory: Directory?
    let tempName: String
    let finalName: String
    /// Escaped wire path, for messages.
    let display: String
    let hasher: StreamHasher?
    /// Ranges whose bytes are on disk (or written to stdout), holes included.
    private(set) var stored = ReceivedRanges()
    /// Ranges that read as zeros and were never written (sparse files),
    /// kept until the hash has passed them: a file of a million extents
    /// costs a few of them at a time, not a million.
    private var holes = ReceivedRanges()
    private(set) var holeBytes: UInt64 = 0
    private(set) var hashedUpTo: UInt64 = 0
    /// A patched file is hashed whole once complete (its kept chunks and
    /// new ones interleave), off the loop; the digest lands here.
    let hashesAtEnd: Bool
    var endDigest: Digest128?
    var endHashStarted = false
    private var committed = false
    /// Files (not streams) keep their bytes across an interrupted push.
    let partial: Partial?
    private var mapped: UInt64 = 0
    /// How often the map records progress: losing this much on a crash is fine.
    static let mapEvery: UInt64 = 16 << 20

    /// A file's partial, `.ft-<id>.part`, locked for this session: resumed
    /// from `resume` (an fd already open and locked, its stored prefix and
    /// the hasher that read it), or created fresh (`O_EXCL|O_NOFOLLOW`,
    /// mode 0600, space reserved).
    init(directory: Directory, entry: ManifestEntry, display: String, verify: Bool,
         resume: HeldPrefix?) throws(IOError) {
        let p = Partial(entry)
        let raw: CInt
        if let resume {
            raw = resume.take()
            _ = stored.insert(0..<resume.bytes)
            hashedUpTo = resume.bytes
            mapped = resume.bytes
        } else {
            raw = try Self.createLocked(directory, p, display: display)
        }
        // A kept partial holds only its stored prefix (see `discard`):
        // size and space are set again on resume as on a fresh start.
        do {
            if entry.flags.contains(.sparse) {
                // Holes stay holes: the size is set, only extents are written.
                _ = try retryingEINTR("set the size of", display) { ftruncate(raw, off_t(entry.size)) }
            } else if entry.size >= 1 << 20 {
                try FileSpace.reserve(raw, bytes: entry.size, path: display)
            }
        } catch {
            close(raw)
            // A resumed prefix stays for a later try; a fresh part goes.
            if resume == nil { p.remove(in: directory) }
            throw error
        }
        self.fd = raw
        self.directory = directory
        self.tempName = p.partName
        self.finalName = entry.path.split(separator: UInt8(ascii: "/")).last.map { String(decoding: $0, as: UTF8.self) } ?? ""
        self.display = display
        self.hasher = verify ? (resume?.hasher ?? StreamHasher()) : nil
        self.partial = p
        self.hashesAtEnd = false
    }

    /// A file patched from a copy of the receiver's old version (already
    /// in the part file, locked): the chunks the sender kept count as
    /// stored, the rest arrives. The size becomes the new file's.
    init(directory: Directory, entry: ManifestEntry, display: String, verify: Bool, patch: HeldCopy) throws(IOError) {
        let raw = patch.take()
        let p = Partial(entry)
        do {
            _ = try retryingEINTR("set the size of", display) { ftruncate(raw, off_t(entry.size)) }
        } catch {
            close(raw)
            p.remove(in: directory)
            throw error
        }
        for r in patch.keptRanges(size: entry.size) { stored.formUnion(r) }
        self.fd = raw
        self.directory = directory
        self.tempName = p.partName
        self.finalName = entry.path.split(separator: UInt8(ascii: "/")).last.map { String(decoding: $0, as: UTF8.self) } ?? ""
        self.display = display
        self.hasher = nil
        self.partial = p
        self.hashesAtEnd = verify
    }

    /// Creates the part file, after clearing a stale one. A part file that
    /// another session holds locked means a concurrent push of the same entry.
    static func createLocked(_ dir: Directory, _ p: Partial, display: String) throws(IOError) -> CInt {
        if let old = try? dir.openRegular(p.partName, flags: O_RDWR) {
            guard flock(old.raw, LOCK_EX | LOCK_NB) == 0 else {
                throw IOError(.resourceBusy, "another push is writing", display)
            }
            p.remove(in: dir)
        }
        let fd = try dir.createExclusive(p.partName).release()
        _ = flock(fd, LOCK_EX | LOCK_NB)
        return fd
    }

    /// A temp file for a stream (not resumable), `O_CREAT|O_EXCL|O_NOFOLLOW`.
    init(directory: Directory, finalName: String, display: String, size: UInt64?, verify: Bool) throws(IOError) {
        var name = ""
        var raw: CInt = -1
        for _ in 0..<8 {
            name = ".ft-" + randomHex(8) + ".part"
            do {
                raw = try directory.createExclusive(name).release()
                break
            } catch where error.errno == .fileExists {
                continue
            }
        }
        guard raw >= 0 else { throw IOError(.fileExists, "create a temp file in", directory.displayPath) }
        if let size, size >= 1 << 20, getenv("FT_NO_FALLOC") == nil {
            // Reserve the space now: a full disk fails here, not mid-push.
            do {
                try FileSpace.reserve(raw, bytes: size, path: display)
            } catch {
                close(raw)
                directory.remove(name)
                throw error
            }
        }
        self.fd = raw
        self.directory = directory
        self.tempName = name
        self.finalName = finalName
        self.display = display
        self.hasher = verify ? StreamHasher() : nil
        self.partial = nil
        self.hashesAtEnd = false
    }

    /// Standard output as the sink (`ft recv --stdout`).
    init(stdoutFor display: String, verify: Bool) {
        fd = 1
        directory = nil
        tempName = ""
        finalName = ""
        self.display = display
        hasher = verify ? StreamHasher() : nil
        partial = nil
        hashesAtEnd = false
    }

    deinit {
        if directory != nil { close(fd) }
    }

    var isStdout: Bool { directory == nil }

    /// Bytes at `offset` just passed through memory: hash them there while
    /// they are in cache, if they are next in line.
    func hash(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) {
        guard let hasher, offset == hashedUpTo else { return }
        hasher.update(bytes)
        hashedUpTo += UInt64(bytes.count)
    }

    /// Records bytes as stored and hashes any newly contiguous range from
    /// the page cache.
    func didStore(_ range: Range<UInt64>) throws(IOError) {
        // A chunk sent again after its stream broke may cover bytes that
        // stream had already stored (the same bytes).
        stored.formUnion(range)
        if let partial, let directory, stored.contiguous >= mapped + Self.mapEvery {
            mapped = stored.contiguous
            partial.writeMap(in: directory, stored: mapped)
        }
        try advanceHash()
    }

    /// A range of a sparse file that reads as zeros: nothing is written (on
    /// stdout the zeros are the caller's to write).
    func didSkipHole(_ range: Range<UInt64>) throws(IOError) {
        holeBytes += UInt64(range.count)
        if hasher != nil, !isStdout { holes.formUnion(range) }
        try didStore(range)
    }

    /// Hashes up to where everything has arrived: holes as zeros from
    /// memory, data from the page cache.
    private func advanceHash() throws(IOError) {
        guard let hasher, !isStdout else { return }
        let end = stored.contiguous
        while hashedUpTo < end {
            if let hole = holes.range(containing: hashedUpTo) {
                let stop = min(hole.upperBound, end)
                hasher.updateZeros(stop - hashedUpTo)
                hashedUpTo = stop
                continue
            }
            let stop = min(holes.firstStart(after: hashedUpTo) ?? end, end)
            try hasher.update(fd: fd, offset: hashedUpTo, length: stop - hashedUpTo)
            hashedUpTo = stop
        }
        if holes.ranges.first.map({ $0.upperBound <= hashedUpTo }) == true { holes.remove(0..<hashedUpTo) }
    }

    func digest() -> Digest128? { hasher?.digest() ?? endDigest }

    /// Applies metadata and renames the temp file to its final name, once
    /// `stillBeneath` confirms its directory is where the push put it (a
    /// local user may have moved it out of the destination meanwhile).
    func commit(entry: ManifestEntry, overwrite: Bool, owner: Bool = false,
                stillBeneath: (Directory) -> Bool = { _ in true }) throws(IOError) {
        guard let directory else { return }
        guard stillBeneath(directory) else {
            throw IOError(.noSuchFileOrDirectory, "refusing to commit", display + " (its directory was moved out of the destination during the push)")
        }
        try Directory.applyMetadata(fd, mode: entry.mode, mtimeSeconds: entry.mtimeSeconds,
                                    mtimeNanoseconds: entry.mtimeNanoseconds, path: display,
                                    owner: owner && entry.flags.contains(.owner) ? (entry.uid, entry.gid) : nil)
        do {
            try directory.commit(fd, temp: tempName, as: finalName, replace: overwrite)
        } catch {
            var e = error
            if e.errno == .fileExists { e.operation = "refusing to overwrite"; e.target = display + " (it appeared during the push; pass --overwrite to replace)" }
            throw e
        }
        committed = true
        if let partial { directory.removeOwnFile(partial.mapName) }
    }

    /// Ends an uncommitted sink: with `keep`, a file's stored prefix stays
    /// for the next push (the map records it); otherwise the bytes go.
    func discard(keep: Bool) {
        guard !committed, !settled, let directory else { return }
        settled = true
        // The name may already be another session's file (a later push of
        // the same entry created it after ours was cut off): touch it only
        // while it is still ours.
        guard isStillNamed(in: directory) else { return }
        if keep, let partial, stored.contiguous > 0 {
            // Only what arrived is kept: the space reserved for the rest
            // (or claimed by a sender that then hung up) goes back now.
            _ = ftruncate(fd, off_t(stored.contiguous))
            partial.writeMap(in: directory, stored: stored.contiguous)
            mapped = stored.contiguous
        } else if let partial {
            partial.remove(in: directory)
        } else {
            directory.remove(tempName)
        }
    }

    private var settled = false

    private func isStillNamed(in directory: Directory) -> Bool { directory.holdsSame(tempName, as: fd) }
}

