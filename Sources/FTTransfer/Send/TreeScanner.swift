import Dispatch
import FTEngine
import FTWire
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Walks the roots on a thread of its own and hands out the entries in
/// batches, in tree order (each directory's names sorted by their bytes,
/// depth first), while the push sends earlier batches. At most `window`
/// batches are out and unacknowledged at once, so memory follows the
/// window, not the tree.
final class TreeScanner: @unchecked Sendable {
    struct ScanBatch: Sendable {
        let id: UInt32
        let items: [SourceItem]
    }

    /// Entries left out, by why.
    struct Skipped: Sendable, Equatable {
        var symlinks = 0
        var special = 0
        var unreadable = 0
        var badNames = 0
        /// Left out on purpose (--exclude); not a warning.
        var excluded = 0
        var total: Int { symlinks + special + unreadable + badNames }
    }

    enum Output: Sendable {
        case batch(ScanBatch)
        case warning(String)
        /// The walk is complete: the push's size, and what was left out.
        case finished(Totals, Skipped)
    }

    private let roots: [SourceRoots.Root]
    private let options: ScanOptions
    private let deliver: @Sendable (Output) -> Void
    private let permits: DispatchSemaphore
    private let stopped = Atomic<Bool>(false)
    /// The first batch is small so data starts at once; later ones fill up
    /// to `batchEntries`. The wire allows 4,096 per batch, but what is in
    /// flight (the window's batches) is what both sides hold in memory:
    /// 8 × 1,024 entries is a few MiB, and a batch round trip per 1,024
    /// files costs nothing next to their data.
    static let firstBatchEntries = 128
    static let batchEntries = 1024

    init(roots: [SourceRoots.Root], options: ScanOptions, window: Int, deliver: @escaping @Sendable (Output) -> Void) {
        self.roots = roots
        self.options = options
        self.deliver = deliver
        permits = DispatchSemaphore(value: window)
    }

    func start() {
        DispatchQueue(label: "ft.scan").async { [self] in walk() }
    }

    /// A batch was acknowledged: one more may go out.
    func release() { permits.signal() }

    func cancel() {
        stopped.store(true, ordering: .relaxed)
        permits.signal()
    }

    // MARK: The walk (scanner thread)

    private var items: [SourceItem] = []
    private var itemBytes = 0
    private var nextID: UInt32 = 1
    private var nextBatch: UInt32 = 1
    private var totals = Totals(entries: 0, bytes: 0)
    private var skipped = Skipped()
    private var linkSources: [DevIno: UInt32] = [:]

    private struct DevIno: Hashable {
        var dev: UInt64
        var ino: UInt64
    }

    /// A directory being walked: its fd, its names in order, where we are.
    private struct Level {
        var fd: CInt
        var local: String
        var wire: [UInt8]
        var names: NameList
        var next = 0
    }

    private func walk() {
        for root in roots {
            guard !stopped.load(ordering: .relaxed) else { return }
            guard let local = root.local else {
                add(SourceItem(entry: ManifestEntry(fileID: 0, kind: .stdin, path: root.name, mode: 0o644, size: ManifestEntry.unknownSize,
                                                    mtimeSeconds: Int64(time(nil)), mtimeNanoseconds: 0), origin: .stdin))
                continue
            }
            var st = stat()
            guard stat(local, &st) == 0 else {
                warn(&skipped.unreadable, "skipping \(Escape.forDisplay(local)): \(IOError(Errno(rawValue: errno), "stat").description)")
                continue
            }
            if !root.isDirectory {
                addFile(SourcePath(local), root.name, st)
                continue
            }
            let fd = open(local, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else {
                warn(&skipped.unreadable, "skipping \(Escape.forDisplay(local)): \(IOError(Errno(rawValue: errno), "open directory").description)")
                continue
            }
            add(SourceItem(entry: entry(.directory, root.name, st), origin: .none))
            walkTree(fd: fd, local: local, wire: root.name, anchor: SourceAnchor(walked: fd, local: local))
        }
        flush()
        guard !stopped.load(ordering: .relaxed) else { return }
        deliver(.finished(totals, skipped))
    }

    private func walkTree(fd: CInt, local: String, wire: [UInt8], anchor: SourceAnchor?) {
        var stack = [Level(fd: fd, local: local, wire: wire, names: NameList(fd: fd))]
        while !stack.isEmpty, !stopped.load(ordering: .relaxed) {
            let top = stack.count - 1
            guard stack[top].next < stack[top].names.count else {
                close(stack[top].fd)
                stack.removeLast()
                continue
            }
            let name = stack[top].names[stack[top].next]
            stack[top].next += 1
            let parent = stack[top]
            let localPath = parent.local + "/" + String(decoding: name, as: UTF8.self)
            let wirePath = parent.wire + [UInt8(ascii: "/")] + name
            guard Self.isPlainName(name), wirePath.count <= Int(PeerPath.maxPathBytes), stack.count < PeerPath.maxDepth else {
                warn(&skipped.badNames, "skipping \(Escape.forDisplay(localPath)): its name cannot be sent (not UTF-8, a control character, or too long or deep)")
                continue
            }
            var st = stat()
            guard withCName(name, { fstatat(parent.fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                warn(&skipped.unreadable, "skipping \(Escape.forDisplay(localPath)): \(IOError(Errno(rawValue: errno), "stat").description)")
                continue
            }
            if !options.filter.isEmpty,
               options.filter.excludes(Array(wirePath[(stack[0].wire.count + 1)...]), isDirectory: st.st_mode & S_IFMT == S_IFDIR) {
                skipped.excluded += 1
                continue
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                addFile(SourcePath(localPath, under: anchor), wirePath, st)
            case S_IFDIR:
                let sub = withCName(name) { openat(parent.fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
                guard sub >= 0 else {
                    warn(&skipped.unreadable, "skipping \(Escape.forDisplay(localPath)) and what is in it: \(IOError(Errno(rawValue: errno), "open directory").description)")
                    continue
                }
                add(SourceItem(entry: entry(.directory, wirePath, st), origin: .none))
                stack.append(Level(fd: sub, local: localPath, wire: wirePath, names: NameList(fd: sub)))
            case S_IFLNK:
                addLink(parent.fd, name, localPath, wirePath, depth: stack.count + 1, st)
            default:
                warn(&skipped.special, "skipping \(Escape.forDisplay(localPath)): \(Self.kindName(st.st_mode)) (only files, directories and links travel)")
            }
        }
        for level in stack { close(level.fd) }
    }

    private func addFile(_ local: SourcePath, _ wire: [UInt8], _ st: stat) {
        var e = entry(.file, wire, st)
        if st.st_nlink > 1 {
            let key = DevIno(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
            if let first = linkSources[key] {
                e.kind = .hardlink
                e.size = 0
                e.linkTo = first
                add(SourceItem(entry: e, origin: .none))
                return
            }
            if linkSources.count < ReceiverMachine.maxLinkSources {
                e.flags.insert(.linkSource)
                linkSources[key] = nextID
            }
        }
        if options.sparse, e.size > SmallFiles.maxFileSize, UInt64(st.st_blocks) * 512 + (64 << 10) < e.size {
            e.flags.insert(.sparse)
        }
        // The receiver checks free space against this: a sparse file
        // needs its blocks, not its size.
        totals.bytes += e.flags.contains(.sparse) ? min(e.size, UInt64(st.st_blocks) * 512) : e.size
        add(SourceItem(entry: e, origin: .file(local)))
    }

    private func addLink(_ dirFD: CInt, _ name: [UInt8], _ local: String, _ wire: [UInt8], depth: Int, _ st: stat) {
        var buf = [UInt8](repeating: 0, count: ManifestEntry.maxTarget + 1)
        let n = withCName(name) { c in
            buf.withUnsafeMutableBytes { readlinkat(dirFD, c, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        }
        guard n > 0, n <= ManifestEntry.maxTarget else {
            warn(&skipped.symlinks, "skipping symlink \(Escape.forDisplay(local)): its target cannot be read or is too long")
            return
        }
        let target = Array(buf[..<n])
        guard (try? PeerPath.validateTarget(target)) != nil else {
            warn(&skipped.symlinks, "skipping symlink \(Escape.forDisplay(local)): its target has bytes ft does not send")
            return
        }
        guard options.links.keeps(target: target, depth: depth) else {
            let why = options.links == .none ? "--links none" : "its target \(Escape.forDisplay(bytes: target)) leaves the pushed tree (--links all keeps it)"
            warn(&skipped.symlinks, "skipping symlink \(Escape.forDisplay(local)): \(why)")
            return
        }
        var e = entry(.symlink, wire, st)
        e.size = 0
        e.linkTarget = target
        add(SourceItem(entry: e, origin: .none))
    }

    private func entry(_ kind: ManifestEntry.Kind, _ wire: [UInt8], _ st: stat) -> ManifestEntry {
        var e = ManifestEntry(fileID: 0, kind: kind, path: wire, mode: UInt32(st.st_mode & 0o7777),
                              size: kind == .file ? UInt64(st.st_size) : 0,
                              mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: UInt32(st.st_mtim.tv_nsec))
        if options.owner {
            e.flags.insert(.owner)
            e.uid = st.st_uid
            e.gid = st.st_gid
        }
        return e
    }

    private func add(_ item: consuming SourceItem) {
        item.entry.fileID = nextID
        nextID += 1
        totals.entries += 1
        let size = item.entry.encodedSize
        let limit = nextBatch == 1 ? Self.firstBatchEntries : Self.batchEntries
        if !items.isEmpty, items.count >= limit || !Batch.fits(count: items.count, bytes: itemBytes, adding: size) { flush() }
        items.append(item)
        itemBytes += size
    }

    private func flush() {
        guard !items.isEmpty else { return }
        permits.wait()
        guard !stopped.load(ordering: .relaxed) else { return }
        let b = ScanBatch(id: nextBatch, items: items)
        nextBatch += 1
        items = []
        itemBytes = 0
        deliver(.batch(b))
    }

    private func warn(_ counter: inout Int, _ message: String) {
        counter += 1
        deliver(.warning(message))
    }

    /// A name the receiver's rules take: UTF-8, no control characters, at
    /// most 255 bytes (readdir never gives '/' or NUL).
    static func isPlainName(_ name: [UInt8]) -> Bool {
        guard !name.isEmpty, name.count <= PeerPath.maxComponentBytes, let text = String(validating: name, as: UTF8.self) else { return false }
        return !text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }
    }

    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a fifo"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        default: return "not a regular file"
        }
    }
}

/// A directory's names, read once and sorted by their bytes, in one buffer
/// (a directory of a million names costs their bytes, not a million arrays).
struct NameList {
    private var bytes: [UInt8] = []
    private var spans: [(start: UInt32, count: UInt16)] = []

    init(fd: CInt) {
        let copy = dup(fd)
        guard copy >= 0, let d = fdopendir(copy) else { return }
        defer { closedir(d) }
        while let ent = readdir(d) {
            withUnsafeBytes(of: ent.pointee.d_name) { raw in
                let n = raw.firstIndex(of: 0) ?? raw.count
                if n == 1, raw[0] == UInt8(ascii: ".") { return }
                if n == 2, raw[0] == UInt8(ascii: "."), raw[1] == UInt8(ascii: ".") { return }
                spans.append((UInt32(bytes.count), UInt16(n)))
                bytes.append(contentsOf: raw[..<n])
            }
        }
        bytes.withUnsafeBufferPointer { b in
            spans.sort { x, y in
                let n = Int(min(x.count, y.count))
                let c = memcmp(b.baseAddress! + Int(x.start), b.baseAddress! + Int(y.start), n)
                return c != 0 ? c < 0 : x.count < y.count
            }
        }
    }

    var count: Int { spans.count }

    subscript(i: Int) -> [UInt8] {
        let s = spans[i]
        return Array(bytes[Int(s.start)..<Int(s.start) + Int(s.count)])
    }
}

/// Calls `body` with `name` as a NUL-terminated C string.
func withCName<R>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: name.count + 1) { z in
        for (i, b) in name.enumerated() { z[i] = CChar(bitPattern: b) }
        z[name.count] = 0
        return body(UnsafePointer(z.baseAddress!))
    }
}
