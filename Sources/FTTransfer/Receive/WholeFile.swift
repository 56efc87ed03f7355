import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Writes a small file that arrived whole and verified: it appears under
/// its final name complete or not at all. An anonymous file (O_TMPFILE)
/// is written, given its mode and mtime, then linked into place; where
/// the filesystem has no O_TMPFILE, a named temp file and a rename.
enum WholeFile {
    static func write(_ bytes: [UInt8], entry: ManifestEntry, name: String, in dir: Directory, overwrite: Bool,
                      direct: Bool = false, display: String, owner: (uid: UInt32, gid: UInt32)? = nil) throws(IOError) {
        if direct {
            // Inside a stage no name is final yet (`Stage`): created in
            // place. A name taken already takes the usual way, which
            // refuses it or, with `overwrite`, replaces it.
            let created: OwnedFD?
            do throws(IOError) {
                created = try dir.createExclusive(name, mode: Directory.effectiveMode(entry.mode))
            } catch where error.errno == .fileExists {
                created = nil
            }
            if let fd = created {
                do throws(IOError) { try fill(fd.raw, bytes, entry, display, owner, modeSet: true) } catch {
                    dir.remove(name)
                    throw error
                }
                return
            }
        }
        let anonymous: OwnedFD
        do {
            // Created with its final mode: no chmod afterwards.
            anonymous = try dir.createAnonymous(mode: Directory.effectiveMode(entry.mode))
        } catch where [.notSupported, .isDirectory, .invalidArgument].contains(error.errno) {
            try viaTempName(bytes, entry: entry, name: name, in: dir, overwrite: overwrite, display: display, owner: owner)
            return
        }
        try fill(anonymous.raw, bytes, entry, display, owner, modeSet: true)
        do {
            try dir.link(anonymous: anonymous.raw, as: name)
        } catch where error.errno == .fileExists && overwrite {
            try dir.commit(anonymous.raw, temp: nil, as: name, replace: true)
        } catch where error.errno == .fileExists {
            var e = error
            e.operation = "refusing to overwrite"
            e.target = display + " (it appeared during the push; pass --overwrite to replace)"
            throw e
        }
    }

    private static func fill(_ fd: CInt, _ bytes: [UInt8], _ entry: ManifestEntry, _ display: String,
                             _ owner: (uid: UInt32, gid: UInt32)?, modeSet: Bool = false) throws(IOError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw IOError(n < 0 ? Errno(rawValue: errno) : .noSpace, "write", display) }
            done += n
        }
        try Directory.applyMetadata(fd, mode: entry.mode, mtimeSeconds: entry.mtimeSeconds,
                                    mtimeNanoseconds: entry.mtimeNanoseconds, path: display, owner: owner, modeSet: modeSet)
    }

    private static func viaTempName(_ bytes: [UInt8], entry: ManifestEntry, name: String, in dir: Directory,
                                    overwrite: Bool, display: String, owner: (uid: UInt32, gid: UInt32)?) throws(IOError) {
        let temp = ".ft-" + randomHex(8) + ".tmp"
        let fd = try dir.createExclusive(temp)
        do {
            try fill(fd.raw, bytes, entry, display, owner)
            try dir.commit(fd.raw, temp: temp, as: name, replace: overwrite)
        } catch {
            dir.remove(temp)
            throw error
        }
    }
}
