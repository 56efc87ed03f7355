import FTEngine
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
    /// Ranges whose bytes are on disk (or written to stdout).
    private(set) var stored = ReceivedRanges()
    private(set) var hashedUpTo: UInt64 = 0
    private var committed = false

    /// A temp file in `directory`, `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600.
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
    }

    /// Standard output as the sink (`ft recv --stdout`).
    init(stdoutFor display: String, verify: Bool) {
        fd = 1
        directory = nil
        tempName = ""
        finalName = ""
        self.display = display
        hasher = verify ? StreamHasher() : nil
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
        _ = stored.insert(range)
        guard let hasher, stored.contiguous > hashedUpTo else { return }
        guard !isStdout else { return }
        try hasher.update(fd: fd, offset: hashedUpTo, length: stored.contiguous - hashedUpTo)
        hashedUpTo = stored.contiguous
    }

    func digest() -> Digest128? { hasher?.digest() }

    /// Applies metadata and renames the temp file to its final name.
    func commit(entry: ManifestEntry, overwrite: Bool) throws(IOError) {
        guard let directory else { return }
        try Directory.applyMetadata(fd, mode: entry.mode, mtimeSeconds: entry.mtimeSeconds,
                                    mtimeNanoseconds: entry.mtimeNanoseconds, path: display)
        do {
            try directory.rename(tempName, to: finalName, replace: overwrite)
        } catch {
            var e = error
            if e.errno == .fileExists { e.operation = "refusing to overwrite"; e.target = display + " (it appeared during the push; pass --overwrite to replace)" }
            throw e
        }
        committed = true
    }

    /// Removes the temp file unless it was committed.
    func discard() {
        if !committed, let directory { directory.remove(tempName) }
    }
}

func randomHex(_ bytes: Int) -> String {
    var rng = SystemRandomNumberGenerator()
    var s = ""
    for _ in 0..<bytes {
        let b = UInt8.random(in: 0...255, using: &rng)
        s += String(b >> 4, radix: 16) + String(b & 0xF, radix: 16)
    }
    return s
}
