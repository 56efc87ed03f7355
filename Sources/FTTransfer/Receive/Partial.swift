import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A file an interrupted push left behind, kept for the next push of the
/// same entry: `.ft-<id>.part` holds the bytes, `.ft-<id>.map` how many from
/// the start are stored. `<id>` comes from the entry's path, size, mtime and
/// mode, so a changed source never resumes onto old bytes.
///
/// The map is a fixed 32-byte record rewritten in place:
///
///     "FTMAP1\0\0" | identity xxh3-128 (16) | stored prefix u64
///
/// It is written after the bytes it counts are stored, so it never claims
/// more than the file holds (after a process crash; a power cut can lose
/// page cache, which the final whole-file hash then catches).
struct Partial {
    static let magic = Array("FTMAP1\u{0}\u{0}".utf8)
    static let mapSize = 32

    let identity: Digest128

    init(_ e: ManifestEntry) {
        var bytes = e.path + [0]
        withUnsafeBytes(of: e.size.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: e.mtimeSeconds.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: e.mtimeNanoseconds.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: e.mode.bigEndian) { bytes += $0 }
        identity = bytes.withUnsafeBytes { StreamHasher.hash($0) }
    }

    var stem: String {
        let h = String(identity.high, radix: 16)
        return ".ft-" + String(repeating: "0", count: 16 - h.count) + h
    }

    var partName: String { stem + ".part" }
    var mapName: String { stem + ".map" }

    func record(_ stored: UInt64) -> [UInt8] {
        var w = WireWriter(capacity: Self.mapSize)
        w.raw(Self.magic)
        w.u64(identity.high)
        w.u64(identity.low)
        w.u64(stored)
        return w.bytes
    }

    /// The stored prefix a map in `dir` records for this identity, or nil.
    func storedPrefix(in dir: Directory) -> UInt64? {
        guard let fd = try? dir.openRegular(mapName, flags: O_RDONLY) else { return nil }
        var buf = [UInt8](repeating: 0, count: Self.mapSize)
        let n = buf.withUnsafeMutableBytes { pread(fd.raw, $0.baseAddress, $0.count, 0) }
        guard n == Self.mapSize, Array(buf[0..<8]) == Self.magic else { return nil }
        var v: [UInt64] = []
        for k in 0..<3 {
            v.append(buf[(8 + k * 8)..<(16 + k * 8)].reduce(0) { $0 << 8 | UInt64($1) })
        }
        guard v[0] == identity.high, v[1] == identity.low else { return nil }
        return v[2]
    }

    func writeMap(in dir: Directory, stored: UInt64) {
        guard let fd = try? dir.openRegular(mapName, flags: O_WRONLY | O_CREAT, mode: 0o600) else { return }
        let rec = record(stored)
        _ = rec.withUnsafeBytes { pwrite(fd.raw, $0.baseAddress, $0.count, 0) }
    }

    func remove(in dir: Directory) {
        dir.removeOwnFile(mapName)
        dir.removeOwnFile(partName)
    }

    /// Deletes partials in `dir` whose map (or, without one, whose part) was
    /// last touched more than `maxAge` seconds ago. Returns how many went.
    ///
    /// Only what ft made goes, since the directory may be shared: names of
    /// exactly ft's shape (`.ft-` and 16 hex digits, then `.part` or
    /// `.map`), regular files owned by this user, and a map only if its
    /// content is a map for that very name. A user's `.ft-notes.part` or
    /// `.ft-2023-budget.map` stays.
    static func sweep(_ dir: Directory, olderThan maxAge: Double) -> Int {
        let dupFD = dup(dir.fd)
        guard dupFD >= 0, let d = fdopendir(dupFD) else { return 0 }
        defer { closedir(d) }
        let now = Double(time(nil))
        var removed = 0
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if stemOf(name) != nil { names.append(name) }
        }
        let me = geteuid()
        for name in names {
            var st = stat()
            guard fstatat(dir.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG,
                  st.st_uid == me, now - Double(st.st_mtim.tv_sec) > maxAge else { continue }
            if name.hasSuffix(".map") {
                guard let high = stemOf(name), isMap(name, in: dir, high: high) else { continue }
            }
            // A part some session holds (it is resuming it, or just
            // offered it) is in use however old it is: its lock says so,
            // for the part and for its map.
            let part = name.hasSuffix(".map") ? String(name.dropLast(4)) + ".part" : name
            var lock: CInt = -1
            do { lock = try dir.openRegular(part, flags: O_RDONLY).release() } catch {}
            defer { if lock >= 0 { close(lock) } }
            if lock >= 0, flock(lock, LOCK_EX | LOCK_NB) != 0 { continue }
            dir.remove(name)
            removed += 1
        }
        return removed
    }

    /// The identity's high half a name of ft's shape carries, or nil.
    static func stemOf(_ name: String) -> UInt64? {
        let u = Array(name.utf8)
        let suffix: Int
        if name.hasSuffix(".part") { suffix = 5 } else if name.hasSuffix(".map") { suffix = 4 } else { return nil }
        guard u.count == 4 + 16 + suffix, name.hasPrefix(".ft-") else { return nil }
        let hex = u[4..<20]
        guard hex.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        return UInt64(String(decoding: hex, as: UTF8.self), radix: 16)
    }

    /// Whether `name` holds a map record whose identity matches its name;
    /// opened without blocking (a fifo planted there must not stall us).
    private static func isMap(_ name: String, in dir: Directory, high: UInt64) -> Bool {
        guard let fd = try? dir.openRegular(name, flags: O_RDONLY) else { return false }
        var buf = [UInt8](repeating: 0, count: mapSize + 1)
        let n = buf.withUnsafeMutableBytes { pread(fd.raw, $0.baseAddress, $0.count, 0) }
        guard n == mapSize, Array(buf[0..<8]) == magic else { return false }
        return buf[8..<16].reduce(0) { $0 << 8 | UInt64($1) } == high
    }
}

/// A partial found at review time: its fd, open and locked, the stored
/// prefix, and the hasher that just read that prefix.
final class HeldPrefix {
    private var fd: CInt
    let bytes: UInt64
    let digest: Digest128
    let hasher: StreamHasher

    init(fd: CInt, bytes: UInt64, digest: Digest128, hasher: StreamHasher) {
        self.fd = fd
        self.bytes = bytes
        self.digest = digest
        self.hasher = hasher
    }

    /// Hands the fd (and its lock) to a sink.
    func take() -> CInt {
        defer { fd = -1 }
        return fd
    }

    deinit { if fd >= 0 { close(fd) } }
}

