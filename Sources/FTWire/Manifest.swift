/// What the sender is about to push, entry by entry, so the receiver can
/// refuse or accept before any byte lands. A long manifest spans several
/// `manifest` frames and ends with one `manifest-end`.
public struct ManifestEntry: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case file = 0
        case directory = 1
        /// Content of unknown length, read from the sender's stdin; its size
        /// comes in the trailer.
        case stdin = 2
    }

    /// Size of a stream whose length is not known up front.
    public static let unknownSize = UInt64.max
    static let fixedSize = 4 + 1 + 1 + 2 + 4 + 8 + 8 + 4

    public var fileID: UInt32
    public var kind: Kind
    /// Relative path, `/`-separated, raw bytes as sent. Untrusted: check it
    /// with `PeerPath.validate` before use.
    public var path: [UInt8]
    public var mode: UInt32
    public var size: UInt64
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: UInt32

    public init(
        fileID: UInt32, kind: Kind, path: [UInt8], mode: UInt32, size: UInt64,
        mtimeSeconds: Int64, mtimeNanoseconds: UInt32
    ) {
        self.fileID = fileID
        self.kind = kind
        self.path = path
        self.mode = mode
        self.size = size
        self.mtimeSeconds = mtimeSeconds
        self.mtimeNanoseconds = mtimeNanoseconds
    }

    public var encodedSize: Int { Self.fixedSize + path.count }

    func encode(into w: inout WireWriter) {
        // Representable is all the encoder asks; the rules are the receiver's.
        precondition(path.count <= Int(UInt16.max))
        w.u32(fileID)
        w.u8(kind.rawValue)
        w.u8(0)
        w.u16(UInt16(path.count))
        w.u32(mode)
        w.u64(size)
        w.i64(mtimeSeconds)
        w.u32(mtimeNanoseconds)
        w.raw(path)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> ManifestEntry {
        let id = try r.u32("file id")
        let kindByte = try r.u8("kind")
        guard let kind = Kind(rawValue: kindByte) else {
            throw .invalidField(.manifest, field: "kind", reason: "unknown kind \(kindByte)")
        }
        try r.skip(1, "reserved")
        let pathLen = Int(try r.u16("path length"))
        let mode = try r.u32("mode")
        let size = try r.u64("size")
        let sec = try r.i64("mtime")
        let nsec = try r.u32("mtime nanoseconds")
        guard nsec < 1_000_000_000 else {
            throw .invalidField(.manifest, field: "mtime nanoseconds", reason: "\(nsec) is not below 10^9")
        }
        let path = try r.bytes(pathLen, "path")
        if kind != .stdin, size == Self.unknownSize {
            throw .invalidField(.manifest, field: "size", reason: "only stdin content may have an unknown size")
        }
        return ManifestEntry(
            fileID: id, kind: kind, path: path, mode: mode, size: size,
            mtimeSeconds: sec, mtimeNanoseconds: nsec)
    }
}

public enum Manifest {
    /// Body cap of one manifest frame; a sender splits longer manifests.
    public static let frameCap: UInt32 = 1 << 20
    /// Entries a receiver accepts in one session.
    public static let maxEntries = 1_000_000

    /// Splits entries into frame bodies that each fit under `frameCap`.
    public static func frames(_ entries: [ManifestEntry]) -> [[ManifestEntry]] {
        var out: [[ManifestEntry]] = []
        var current: [ManifestEntry] = []
        var size = 4
        for e in entries {
            if size + e.encodedSize > Int(frameCap), !current.isEmpty {
                out.append(current)
                current = []
                size = 4
            }
            current.append(e)
            size += e.encodedSize
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}

/// Closes the manifest: how many entries and bytes to expect in all.
public struct ManifestEnd: Equatable, Sendable {
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// The sender will not send hashes; the receiver cannot verify.
        public static let noVerify = Flags(rawValue: 1 << 0)
    }

    public var entryCount: UInt32
    public var totalBytes: UInt64
    public var flags: Flags

    public init(entryCount: UInt32, totalBytes: UInt64, flags: Flags = []) {
        self.entryCount = entryCount
        self.totalBytes = totalBytes
        self.flags = flags
    }
}
