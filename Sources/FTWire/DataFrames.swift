/// Announces one chunk of a file; exactly `length` payload bytes follow the
/// frame on the stream. Fixed size, encoded in place: no allocation per chunk.
public struct DataHeader: Equatable, Sendable {
    public static let bodySize: UInt32 = 16
    /// Prefix plus body: what the sender writes before each payload.
    public static let wireSize = FramePrefix.size + Int(bodySize)
    /// Largest chunk a receiver accepts; a bigger one is a protocol violation.
    public static let maxChunk: UInt32 = 64 << 20

    public var fileID: UInt32
    public var length: UInt32
    public var offset: UInt64

    public init(fileID: UInt32, length: UInt32, offset: UInt64) {
        self.fileID = fileID
        self.length = length
        self.offset = offset
    }

    /// Writes prefix and body (24 bytes) into `out`.
    public func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.wireSize)
        FramePrefix(type: .data, length: Self.bodySize).encode(into: out)
        out.storeBytes(of: fileID.bigEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: length.bigEndian, toByteOffset: 12, as: UInt32.self)
        out.storeBytes(of: offset.bigEndian, toByteOffset: 16, as: UInt64.self)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> DataHeader {
        let id = try r.u32("file id")
        let len = try r.u32("length")
        let off = try r.u64("offset")
        guard len <= Self.maxChunk else {
            throw .invalidField(.data, field: "length", reason: "\(len) is over the chunk cap of \(Self.maxChunk)")
        }
        guard off <= UInt64(Int64.max) - UInt64(len) else {
            throw .invalidField(.data, field: "offset", reason: "\(off) + \(len) overflows")
        }
        return DataHeader(fileID: id, length: len, offset: off)
    }
}

/// Trailer of one file: its final size and, unless verification is off, the
/// sender's xxh3-128 of the whole content.
public struct FileEnd: Equatable, Sendable {
    public static let bodySize: UInt32 = 4 + 4 + 8 + 16

    public var fileID: UInt32
    public var size: UInt64
    public var digest: Digest128?
    /// The sender could not read the file after all (it announced it, then
    /// found it unreadable or gone): nothing of it lands.
    public var unreadable: Bool

    public init(fileID: UInt32, size: UInt64, digest: Digest128?, unreadable: Bool = false) {
        self.fileID = fileID
        self.size = size
        self.digest = digest
        self.unreadable = unreadable
    }

    func encode(into w: inout WireWriter) {
        w.u32(fileID)
        w.u32((digest == nil ? 0 : 1) | (unreadable ? 2 : 0))
        w.u64(size)
        (digest ?? .zero).write(to: &w)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> FileEnd {
        let id = try r.u32("file id")
        let flags = try r.u32("flags")
        guard flags & ~3 == 0 else {
            throw .invalidField(.fileEnd, field: "flags", reason: "unknown bits 0x\(String(flags, radix: 16))")
        }
        let size = try r.u64("size")
        let digest = try Digest128.read(from: &r, "digest")
        return FileEnd(fileID: id, size: size, digest: flags & 1 == 1 ? digest : nil, unreadable: flags & 2 != 0)
    }
}

/// Many small files whole in one frame: each with its id, its bytes and
/// (unless verification is off) its digest. Saves the per-file round trips
/// of data + file-end frames where files are smaller than a chunk.
public struct SmallFiles: Equatable, Sendable {
    public struct File: Equatable, Sendable {
        public var fileID: UInt32
        public var digest: Digest128?
        public var bytes: [UInt8]

        public init(fileID: UInt32, digest: Digest128?, bytes: [UInt8]) {
            self.fileID = fileID
            self.digest = digest
            self.bytes = bytes
        }

        public static let headerSize = 4 + 4 + 4 + 16
    }

    /// Body cap: senders fill frames up to `batchBytes` of payload.
    public static let frameCap: UInt32 = 2 << 20
    public static let batchBytes = 1 << 20
    /// Files up to this size travel in batches.
    public static let maxFileSize: UInt64 = 64 << 10

    public var files: [File]
    public init(files: [File]) { self.files = files }

    /// A body before its first file: the file count.
    public static let emptyBodySize = 4

    /// Body size of a batch of files of these sizes.
    public static func bodySize<S: Sequence>(fileSizes: S) -> Int where S.Element == Int {
        fileSizes.reduce(emptyBodySize) { $0 + File.headerSize + $1 }
    }

    public var encodedSize: Int { Self.bodySize(fileSizes: files.lazy.map(\.bytes.count)) }
}

/// Writes a `small-files` body in place, each file's bytes read straight
/// into the frame that will be sent: the sender's batch costs no array per
/// file and no copy from file buffers into a frame. Same layout as
/// `FrameCodec` writes for `.smallFiles` (tested against it).
public struct SmallFilesBuilder {
    private let body: UnsafeMutableRawBufferPointer
    public private(set) var count: UInt32 = 0
    /// Body bytes written so far.
    public private(set) var length = SmallFiles.emptyBodySize

    /// `body` must hold `SmallFiles.bodySize` of every file that will be
    /// added.
    public init(body: UnsafeMutableRawBufferPointer) {
        precondition(body.count >= SmallFiles.emptyBodySize)
        self.body = body
        body.storeBytes(of: UInt32(0), toByteOffset: 0, as: UInt32.self)
    }

    /// Room left for files (headers included).
    public var remaining: Int { body.count - length }

    /// Adds one file unless `fill` gives up: `fill` returns nil to leave the
    /// file out (its bytes are then overwritten by the next file), or its
    /// digest (itself nil when sent without one). Whether it was added.
    public mutating func tryAdd(fileID: UInt32, size: Int, fill: (UnsafeMutableRawBufferPointer) -> Digest128??) -> Bool {
        precondition(SmallFiles.File.headerSize + size <= remaining && UInt64(size) <= SmallFiles.maxFileSize)
        let at = length
        let content = UnsafeMutableRawBufferPointer(rebasing: body[(at + SmallFiles.File.headerSize)...].prefix(size))
        guard let digest = fill(content) else { return false }
        body.storeBytes(of: fileID.bigEndian, toByteOffset: at, as: UInt32.self)
        body.storeBytes(of: UInt32(size).bigEndian, toByteOffset: at + 4, as: UInt32.self)
        body.storeBytes(of: UInt32(digest == nil ? 0 : 1).bigEndian, toByteOffset: at + 8, as: UInt32.self)
        let d = digest ?? .zero
        body.storeBytes(of: d.high.bigEndian, toByteOffset: at + 12, as: UInt64.self)
        body.storeBytes(of: d.low.bigEndian, toByteOffset: at + 20, as: UInt64.self)
        length += SmallFiles.File.headerSize + size
        count += 1
        body.storeBytes(of: count.bigEndian, toByteOffset: 0, as: UInt32.self)
        return true
    }

    /// Adds one file of `size` bytes: `fill` writes exactly that many bytes
    /// into the buffer it is given and returns their digest (nil: sent
    /// without one); if it throws, nothing is added.
    public mutating func add<E: Error>(fileID: UInt32, size: Int,
                                       fill: (UnsafeMutableRawBufferPointer) throws(E) -> Digest128?) throws(E) {
        var failure: E?
        _ = tryAdd(fileID: fileID, size: size) { content in
            do throws(E) {
                return .some(try fill(content))
            } catch {
                failure = error
                return nil
            }
        }
        if let failure { throw failure }
    }

}
