import CURing
import SystemPackage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An open directory, and every file operation the receiver makes beneath
/// it. Peer-supplied names only ever reach the kernel through these calls,
/// which resolve relative to this fd with `RESOLVE_BENEATH` and refuse every
/// symlink, so no name can escape the directory or be redirected by a link
/// planted in it. Names are checked and opened in one step, never checked
/// first and opened later.
///
/// Sendable: it holds only its fd and a name, both immutable, and every
/// method is a system call on that fd; the offload thread makes
/// directories through the receiver's destination while the loop reads it.
public final class Directory: @unchecked Sendable {
    public let fd: CInt
    /// For messages only.
    public let displayPath: String

    /// openat2's resolve flags for names beneath a directory through no
    /// link; the sender opens its source files with them too.
    public static let beneath = FT_RESOLVE_BENEATH | FT_RESOLVE_NO_SYMLINKS | FT_RESOLVE_NO_MAGICLINKS

    init(fd: CInt, displayPath: String) {
        self.fd = fd
        self.displayPath = displayPath
    }

    deinit { close(fd) }

    /// Opens a directory the local user named (trusted: links are followed).
    public static func open(_ path: String) throws(IOError) -> Directory {
        let fd = try retryingEINTR("open directory", path) {
            ft_openat2(AT_FDCWD, path, UInt64(O_DIRECTORY | O_RDONLY | O_CLOEXEC), 0, 0)
        }
        return Directory(fd: fd, displayPath: path)
    }

    func child(_ relative: String) -> String {
        displayPath.hasSuffix("/") ? displayPath + relative : displayPath + "/" + relative
    }

    /// Opens `relative` beneath this directory without following any link.
    public func open(_ relative: String, flags: CInt, mode: mode_t = 0) throws(IOError) -> OwnedFD {
        OwnedFD(try retryingEINTR("open", child(relative)) {
            ft_openat2(fd, relative, UInt64(flags | O_CLOEXEC | O_NOFOLLOW), UInt64(mode), Self.beneath)
        })
    }

    /// Opens `relative` as `open` does, and only if it is a regular file:
    /// `O_NONBLOCK` so that a fifo or device planted under the name cannot
    /// hold the thread in `open`, then cleared again (io_uring honours it
    /// on regular files and would answer EAGAIN instead of waiting for the
    /// disk).
    public func openRegular(_ relative: String, flags: CInt, mode: mode_t = 0) throws(IOError) -> OwnedFD {
        let file = try open(relative, flags: flags | O_NONBLOCK, mode: mode)
        var st = Glibc.stat()
        guard fstat(file.raw, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw IOError(.invalidArgument, "open", child(relative) + " (not a regular file)")
        }
        _ = fcntl(file.raw, F_SETFL, fcntl(file.raw, F_GETFL) & ~O_NONBLOCK)
        return file
    }

    /// Opens the subdirectory at `components`, creating missing levels with
    /// mode 0700 (the final modes are applied once the push is complete).
    /// Returns the directory and how many levels were created.
    public func openDirectory(_ components: ArraySlice<String>, create: Bool) throws(IOError) -> (Directory, created: Int) {
        // Most directories exist: one lookup for the whole path, beneath
        // this one and through no link; the level-by-level walk only when
        // something is missing and may be made.
        if !components.isEmpty {
            let joined = components.joined(separator: "/")
            let r = Self.openSubdirectory(fd, joined)
            if r >= 0 { return (Directory(fd: r, displayPath: child(joined)), 0) }
            if errno != ENOENT || !create {
                var e = IOError(Errno(rawValue: errno), "open directory", child(joined))
                if e.errno == .tooManySymbolicLinkLevels || e.errno == .notDirectory {
                    e.operation = "refusing to write through"
                    e.target = child(joined) + " (a symlink or a non-directory is in the way)"
                }
                throw e
            }
        }
        // A tree is announced parent first, so the parent of a missing
        // directory is most often there already: open it in one lookup
        // and make only the last level. Walking from the top for every
        // level would cost depth² lookups on a deep new tree.
        if components.count > 1, let made = try makeLast(components) { return (made, 1) }
        var current = self
        var created = 0
        for name in components {
            let path = current.child(name)
            var r = Self.openSubdirectory(current.fd, name)
            if r < 0, errno == ENOENT, create {
                if mkdirat(current.fd, name, 0o700) == 0 {
                    created += 1
                } else if errno != EEXIST {
                    throw IOError(Errno(rawValue: errno), "create directory", path)
                }
                r = Self.openSubdirectory(current.fd, name)
            }
            guard r >= 0 else {
                var e = IOError(Errno(rawValue: errno), "open directory", path)
                if e.errno == .tooManySymbolicLinkLevels || e.errno == .notDirectory {
                    e.operation = "refusing to write through"
                    e.target = path + " (a symlink or a non-directory is in the way)"
                }
                throw e
            }
            current = Directory(fd: r, displayPath: path)
        }
        return (current, created)
    }

    /// Makes the last of `components` inside its parent, if the parent is
    /// there (nil if not, or if something else got there first: the
    /// level-by-level walk then sorts it out).
    private func makeLast(_ components: ArraySlice<String>) throws(IOError) -> Directory? {
        let parentPath = components.dropLast().joined(separator: "/")
        let parent = Self.openSubdirectory(fd, parentPath)
        guard parent >= 0 else { return nil }
        defer { close(parent) }
        let name = components.last!
        let path = child(parentPath + "/" + name)
        guard mkdirat(parent, name, 0o700) == 0 else {
            if errno == EEXIST { return nil }
            throw IOError(Errno(rawValue: errno), "create directory", path)
        }
        let r = Self.openSubdirectory(parent, name)
        guard r >= 0 else { throw IOError(Errno(rawValue: errno), "open directory", path) }
        return Directory(fd: r, displayPath: path)
    }

    /// Opens the directory at `relative` beneath `at`, through no link;
    /// the fd, or -1 with errno set.
    private static func openSubdirectory(_ at: CInt, _ relative: String) -> CInt {
        ft_openat2(at, relative, UInt64(O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW), 0, beneath)
    }

    /// What is at `components` (without following links), or nil.
    public func lookup(_ components: [String]) throws(IOError) -> stat? {
        let relative = components.joined(separator: "/")
        let r = ft_openat2(fd, relative, UInt64(FT_O_PATH | O_CLOEXEC | O_NOFOLLOW), 0, Self.beneath)
        if r < 0 {
            if errno == ENOENT { return nil }
            var e = IOError(Errno(rawValue: errno), "look up", child(relative))
            if e.errno == .tooManySymbolicLinkLevels || e.errno == .improperLink {
                e.operation = "refusing to resolve"
                e.target = child(relative) + " (it crosses a symlink or leaves the destination)"
            }
            throw e
        }
        defer { close(r) }
        var st = stat()
        _ = try retryingEINTR("stat", child(relative)) { fstat(r, &st) }
        return st
    }

    /// Creates a new file that did not exist (`O_EXCL`), for writing.
    public func createExclusive(_ name: String, mode: mode_t = 0o600) throws(IOError) -> OwnedFD {
        try open(name, flags: O_CREAT | O_EXCL | O_RDWR, mode: mode)
    }

    /// The mode a file gets here for `mode`: no setuid, setgid or sticky
    /// bit, and the process's umask applied, as every other tool's creates.
    public static func effectiveMode(_ mode: UInt32) -> mode_t {
        mode_t(mode & 0o777) & ~processUmask
    }

    /// Read once: umask(2) can only be read by setting it.
    public static let processUmask: mode_t = {
        let old = umask(0o022)
        umask(old)
        return old
    }()

    /// An unnamed file in this directory (O_TMPFILE): nothing appears under
    /// any name until `link`, and a crash leaves nothing at all.
    public func createAnonymous(mode: mode_t = 0o600) throws(IOError) -> OwnedFD {
        OwnedFD(try retryingEINTR("create a file in", displayPath) {
            ft_openat2(fd, ".", UInt64(FT_O_TMPFILE | O_RDWR | O_CLOEXEC), UInt64(mode), 0)
        })
    }

    /// Gives an anonymous file its name, atomically; fails with EEXIST if
    /// the name is taken. Since Linux 6.10 linkat with AT_EMPTY_PATH works
    /// for a file the caller opened itself, without a walk through /proc
    /// (a tenth of a small file's cost). Older kernels want
    /// CAP_DAC_READ_SEARCH for it and answer ENOENT or EPERM: then we stop
    /// asking and link through /proc/self/fd.
    public func link(anonymous file: CInt, as name: String) throws(IOError) {
        if Self.emptyPathLinks.load(ordering: .relaxed) {
            let r = linkat(file, "", fd, name, 0x1000)  // AT_EMPTY_PATH (not in Glibc's Swift module)
            if r == 0 { return }
            let e = errno
            if e != ENOENT, e != EPERM, e != EINVAL {
                throw IOError(Errno(rawValue: e), "create", child(name))
            }
            Self.emptyPathLinks.store(false, ordering: .relaxed)
        }
        _ = try retryingEINTR("create", child(name)) {
            linkat(AT_FDCWD, "/proc/self/fd/\(file)", fd, name, CInt(AT_SYMLINK_FOLLOW))
        }
    }

    private static let emptyPathLinks = Atomic<Bool>(true)

    /// Renames within this directory. Without `replace` an existing target
    /// is never clobbered (`RENAME_NOREPLACE`, atomic).
    public func rename(_ from: String, to: String, replace: Bool) throws(IOError) {
        _ = try retryingEINTR("rename into place", child(to)) {
            ft_renameat2(fd, from, fd, to, replace ? 0 : FT_RENAME_NOREPLACE)
        }
    }

    public func remove(_ name: String) {
        _ = unlinkat(fd, name, 0)
    }

    /// Moves `name` from here into `target`, under the same name; never
    /// replaces what is there (`RENAME_NOREPLACE`: EEXIST, or ENOTEMPTY
    /// for a directory on some filesystems).
    public func move(_ name: String, into target: Directory) throws(IOError) {
        _ = try retryingEINTR("move into place", target.child(name)) {
            ft_renameat2(fd, name, target.fd, name, FT_RENAME_NOREPLACE)
        }
    }

    /// Removes the empty directory `name`; false if it is not (or is not empty).
    @discardableResult
    public func removeEmptyDirectory(_ name: String) -> Bool {
        unlinkat(fd, name, AT_REMOVEDIR) == 0
    }

    /// Puts the open file `file`, whose temp name here is `temp`, under
    /// `name`: the inode that was written and verified, never whatever a
    /// name points to by then. A local user who can write here may swap the
    /// temp name for a file of their own; renaming by name would put their
    /// file in place. So the fd is linked: without `replace` straight to
    /// `name` (atomic, EEXIST if taken); with it, to a fresh name that is
    /// renamed over `name` and checked to still be this inode afterwards.
    /// The temp name goes only while it still names this inode.
    public func commit(_ file: CInt, temp: String?, as name: String, replace: Bool) throws(IOError) {
        if replace {
            let staging = ".ft-" + randomHex(8) + ".tmp"
            try link(anonymous: file, as: staging)
            do {
                try rename(staging, to: name, replace: true)
            } catch {
                removeIfSame(staging, as: file)
                throw error
            }
            guard holdsSame(name, as: file) else {
                throw IOError(.resourceBusy, "commit", child(name) + " (another process replaced it as it was put in place; the verified copy was not kept)")
            }
        } else {
            try link(anonymous: file, as: name)
        }
        if let temp { removeIfSame(temp, as: file) }
    }

    /// Whether `name` here is the inode open as `file` (links not followed).
    public func holdsSame(_ name: String, as file: CInt) -> Bool {
        var mine = Glibc.stat(), named = Glibc.stat()
        guard fstat(file, &mine) == 0, fstatat(fd, name, &named, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
        return mine.st_dev == named.st_dev && mine.st_ino == named.st_ino
    }

    /// Unlinks `name` only if it is a regular file this user owns: what a
    /// local user planted under one of ft's names (a fifo, their own file)
    /// stays.
    public func removeOwnFile(_ name: String) {
        var st = Glibc.stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() else { return }
        remove(name)
    }

    /// Unlinks `name` if it is the inode open as `file`; someone else's file
    /// under that name stays.
    public func removeIfSame(_ name: String, as file: CInt) {
        if holdsSame(name, as: file) { remove(name) }
    }

    /// What stands at `name` here, the link itself for a symlink; nil if
    /// nothing does. `name` is one component: no path walk, no link followed.
    public func status(of name: String) throws(IOError) -> stat? {
        var st = Glibc.stat()
        if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
        if errno == ENOENT { return nil }
        throw IOError(Errno(rawValue: errno), "look up", child(name))
    }

    /// Device and inode of this directory, to tell whether a path still
    /// leads to it.
    public var identity: (dev: UInt64, ino: UInt64)? {
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return (UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// A symlink `name` holding `target` as text (never resolved here).
    /// Fails with EEXIST if the name is taken.
    public func makeSymlink(_ name: String, target: [UInt8]) throws(IOError) {
        let text = String(decoding: target, as: UTF8.self)
        _ = try retryingEINTR("create the symlink", child(name)) { symlinkat(text, fd, name) }
    }

    /// mtime and, when given, owner of the symlink `name` itself.
    public func applyLinkMetadata(_ name: String, mtimeSeconds: Int64, mtimeNanoseconds: UInt32, owner: (uid: UInt32, gid: UInt32)?) {
        if let owner { _ = fchownat(fd, name, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) }
        var times = [timespec(tv_sec: 0, tv_nsec: Int(FT_UTIME_OMIT)),
                     timespec(tv_sec: Int(mtimeSeconds), tv_nsec: Int(mtimeNanoseconds))]
        _ = utimensat(fd, name, &times, AT_SYMLINK_NOFOLLOW)
    }

    /// The target of the symlink `name`, as it is stored.
    public func readLink(_ name: String) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 4097)
        let n = buf.withUnsafeMutableBytes { readlinkat(fd, name, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        return n >= 0 ? Array(buf[..<n]) : nil
    }

    /// Bytes an unprivileged writer may still use on this filesystem.
    public func availableBytes() throws(IOError) -> UInt64 {
        var s = statvfs()
        _ = try retryingEINTR("check free space on", displayPath) { fstatvfs(fd, &s) }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Applies mode (without setuid, setgid or sticky), mtime and, when
    /// given, uid and gid by number (a receiver running as root) to an open
    /// fd. Ownership goes first: chown clears setuid bits anyway, and the
    /// mode that follows is the one meant.
    /// `modeSet`: the file was created with its mode already (fchmod skipped).
    public static func applyMetadata(_ fd: CInt, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: UInt32, path: String,
                                     owner: (uid: UInt32, gid: UInt32)? = nil, modeSet: Bool = false) throws(IOError) {
        if let owner { _ = try retryingEINTR("set the owner of", path) { fchown(fd, owner.uid, owner.gid) } }
        if !modeSet || owner != nil { _ = try retryingEINTR("set mode of", path) { fchmod(fd, effectiveMode(mode)) } }
        var times = [timespec(tv_sec: 0, tv_nsec: Int(FT_UTIME_OMIT)),
                     timespec(tv_sec: Int(mtimeSeconds), tv_nsec: Int(mtimeNanoseconds))]
        _ = try retryingEINTR("set mtime of", path) { futimens(fd, &times) }
    }
}

public enum FileSpace {
    /// Reserves `bytes` for a file so that a full disk fails now, not halfway
    /// through. Filesystems without fallocate are let through.
    public static func reserve(_ fd: CInt, bytes: UInt64, path: String) throws(IOError) {
        guard ft_fallocate(fd, 0, 0, Int64(bytes)) != 0 else { return }
        let e = errno
        if e == EOPNOTSUPP || e == ENOSYS || e == EINVAL { return }
        throw IOError(Errno(rawValue: e), "reserve \(bytes) bytes for", path)
    }
}

/// `bytes` random bytes as lowercase hex, for temp names and ids.
public func randomHex(_ bytes: Int) -> String {
    var rng = SystemRandomNumberGenerator()
    var s = ""
    for _ in 0..<bytes {
        let b = UInt8.random(in: 0...255, using: &rng)
        s += String(b >> 4, radix: 16) + String(b & 0xF, radix: 16)
    }
    return s
}
