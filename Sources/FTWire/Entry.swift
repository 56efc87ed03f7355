/// One thing a push carries, announced in a `batch` so the receiver can
/// refuse or accept it before any of its bytes land.
///
///     id u32 | kind u8 | flags u8 | path length u16 | mode u32 | size u64
///     | mtime s i64 | mtime ns u32
///     [uid u32 | gid u32]                      with the owner flag
///     [link-to id u32]                         a hard link
///     [target length u16 | target]             a symlink
///     [xattr count u16 | (name len u8 | value len u16 | name | value)...]
///     | path
public struct ManifestEntry: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case file = 0
        case directory = 1
        /// Content of unknown length, read from the sender's stdin; its size
        /// comes in the trailer.
        case stdin = 2
        /// A symbolic link; its target text travels in the entry.
        case symlink = 3
        /// Another name for a file entry earlier in this push (`linkTo`).
        case hardlink = 4
    }

    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The file has holes: its data arrives as extents and `hole`
        /// frames, and the holes are left unwritten.
        public static let sparse = Flags(rawValue: 1 << 0)
        /// Later entries may be hard links to this file.
        public static let linkSource = Flags(rawValue: 1 << 1)
        /// uid and gid follow.
        public static let owner = Flags(rawValue: 1 << 2)
        /// Extended attributes follow.
        public static let xattrs = Flags(rawValue: 1 << 3)
        static let known: Flags = [.sparse, .linkSource, .owner, .xattrs]
    }

    public struct XAttr: Equatable, Sendable {
        public var name: [UInt8]
        public var value: [UInt8]
        public init(name: [UInt8], value: [UInt8]) {
            self.name = name
            self.value = value
        }
    }

    /// Size of a stdin entry, whose length is not known up front.
    public static let unknownSize = UInt64.max
    static let fixedSize = 4 + 1 + 1 + 2 + 4 + 8 + 8 + 4
    public static let maxTarget = 4096
    public static let maxXAttrs = 64
    public static let maxXAttrValue = 4096

    public var fileID: UInt32
    public var kind: Kind
    public var flags: Flags
    /// Relative path, `/`-separated, raw bytes as sent. Untrusted: check it
    /// with `PeerPath.validate` before use.
    public var path: [UInt8]
    public var mode: UInt32
    public var size: UInt64
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: UInt32
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    /// A symlink's target, as the link holds it. Untrusted.
    public var linkTarget: [UInt8] = []
    /// A hard link: the id of the file it is another name for.
    public var linkTo: UInt32 = 0
    public var xattrs: [XAttr] = []

    public init(
        fileID: UInt32, kind: Kind, path: [UInt8], mode: UInt32, size: UInt64,
        mtimeSeconds: Int64, mtimeNanoseconds: UInt32, flags: Flags = []
    ) {
        self.fileID = fileID
        self.kind = kind
        self.flags = flags
        self.path = path
        self.mode = mode
        self.size = size
        self.mtimeSeconds = mtimeSeconds
        self.mtimeNanoseconds = mtimeNanoseconds
    }

    public var encodedSize: Int {
        var n = Self.fixedSize + path.count
        if flags.contains(.owner) { n += 8 }
        if kind == .hardlink { n += 4 }
        if kind == .symlink { n += 2 + linkTarget.count }
        if flags.contains(.xattrs) { n += 2 + xattrs.reduce(0) { $0 + 3 + $1.name.count + $1.value.count } }
        return n
    }

    func encode(into w: inout WireWriter) {
        // Representable is all the encoder asks; the rules are the receiver's.
        precondition(path.count <= Int(UInt16.max) && linkTarget.count <= Int(UInt16.max))
        w.u32(fileID)
        w.u8(kind.rawValue)
        w.u8(flags.rawValue)
        w.u16(UInt16(path.count))
        w.u32(mode)
        w.u64(size)
        w.i64(mtimeSeconds)
        w.u32(mtimeNanoseconds)
        if flags.contains(.owner) {
            w.u32(uid)
            w.u32(gid)
        }
        if kind == .hardlink { w.u32(linkTo) }
        if kind == .symlink {
            w.u16(UInt16(linkTarget.count))
            w.raw(linkTarget)
        }
        if flags.contains(.xattrs) {
            w.u16(UInt16(xattrs.count))
            for x in xattrs {
                w.u8(UInt8(x.name.count))
                w.u16(UInt16(x.value.count))
                w.raw(x.name)
                w.raw(x.value)
            }
        }
        w.raw(path)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> ManifestEntry {
        let id = try r.u32("file id")
        let kindByte = try r.u8("kind")
        guard let kind = Kind(rawValue: kindByte) else {
            throw .invalidField(.batch, field: "kind", reason: "unknown kind \(kindByte)")
        }
        let flags = Flags(rawValue: try r.u8("flags"))
        guard Flags.known.isSuperset(of: flags) else {
            throw .invalidField(.batch, field: "flags", reason: "unknown bits 0x\(String(flags.rawValue, radix: 16))")
        }
        let pathLen = Int(try r.u16("path length"))
        let mode = try r.u32("mode")
        let size = try r.u64("size")
        let sec = try r.i64("mtime")
        let nsec = try r.u32("mtime nanoseconds")
        guard nsec < 1_000_000_000 else {
            throw .invalidField(.batch, field: "mtime nanoseconds", reason: "\(nsec) is not below 10^9")
        }
        if kind != .stdin, size == unknownSize {
            throw .invalidField(.batch, field: "size", reason: "only stdin content may have an unknown size")
        }
        if flags.contains(.sparse) || flags.contains(.linkSource), kind != .file {
            throw .invalidField(.batch, field: "flags", reason: "only a file may be sparse or a link source")
        }
        var e = ManifestEntry(fileID: id, kind: kind, path: [], mode: mode, size: size, mtimeSeconds: sec,
                              mtimeNanoseconds: nsec, flags: flags)
        if flags.contains(.owner) {
            e.uid = try r.u32("uid")
            e.gid = try r.u32("gid")
        }
        if kind == .hardlink { e.linkTo = try r.u32("link-to id") }
        if kind == .symlink {
            let n = Int(try r.u16("target length"))
            guard n > 0, n <= maxTarget else {
                throw .invalidField(.batch, field: "target length", reason: "\(n) is not 1 to \(maxTarget)")
            }
            e.linkTarget = try r.bytes(n, "target")
        }
        if flags.contains(.xattrs) {
            let n = Int(try r.u16("xattr count"))
            guard n <= maxXAttrs else { throw .invalidField(.batch, field: "xattr count", reason: "\(n) is over \(maxXAttrs)") }
            for _ in 0..<n {
                let nameLen = Int(try r.u8("xattr name length"))
                let valueLen = Int(try r.u16("xattr value length"))
                guard nameLen > 0, valueLen <= maxXAttrValue else {
                    throw .invalidField(.batch, field: "xattr", reason: "name of \(nameLen) bytes, value of \(valueLen)")
                }
                e.xattrs.append(XAttr(name: try r.bytes(nameLen, "xattr name"), value: try r.bytes(valueLen, "xattr value")))
            }
        }
        e.path = try r.bytes(pathLen, "path")
        return e
    }
}

/// One step of the manifest: entries `batchID` of the push, in tree order.
/// A push's entries come in batches while earlier batches' data flows, and
/// the receiver answers each batch before any of its bytes land.
public struct Batch: Equatable, Sendable {
    /// Body cap of one batch frame.
    public static let frameCap: UInt32 = 1 << 20
    /// Entries in one batch at most.
    public static let maxEntries = 4096
    static let emptySize = 8

    public var batchID: UInt32
    public var entries: [ManifestEntry]

    public init(batchID: UInt32, entries: [ManifestEntry]) {
        self.batchID = batchID
        self.entries = entries
    }

    /// Whether one more entry of `size` bytes fits a batch of `count`
    /// entries and `bytes` encoded bytes.
    public static func fits(count: Int, bytes: Int, adding size: Int) -> Bool {
        count < maxEntries && emptySize + bytes + size <= Int(frameCap)
    }
}
