/// Appends big-endian fields to a byte array. Control frames only: the data
/// path encodes its fixed-size headers in place with `DataHeader.encode(into:)`.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    public mutating func raw<C: Collection>(_ v: C) where C.Element == UInt8 { bytes.append(contentsOf: v) }

    /// Overwrites a u32 written earlier (used to patch lengths).
    public mutating func patchU32(at index: Int, _ v: UInt32) {
        let be = v.bigEndian
        withUnsafeBytes(of: be) { src in
            for i in 0..<4 { bytes[index + i] = src[i] }
        }
    }
}

/// Reads big-endian fields from a body whose length is already known, so
/// running out of bytes is a malformed frame, never "need more".
public struct WireReader {
    @usableFromInline let base: UnsafeRawBufferPointer
    public private(set) var offset: Int = 0
    let type: FrameType

    public init(_ base: UnsafeRawBufferPointer, type: FrameType) {
        self.base = base
        self.type = type
    }

    public var remaining: Int { base.count - offset }

    /// A u32 count of records, each at least `minSize` bytes, then the
    /// records: a count that cannot fit in what is left is refused before
    /// anything is reserved for it.
    mutating func records<T>(_ field: String, minSize: Int,
                             _ each: (inout WireReader) throws(WireError) -> T) throws(WireError) -> [T] {
        let count = Int(try u32(field))
        guard count <= remaining / minSize else {
            throw .invalidField(type, field: field, reason: "\(count) records cannot fit in \(remaining) bytes")
        }
        var out: [T] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try each(&self)) }
        return out
    }

    mutating func take(_ n: Int, _ field: String) throws(WireError) -> UnsafeRawBufferPointer {
        guard n >= 0, remaining >= n else { throw .truncated(type, field: field) }
        let slice = UnsafeRawBufferPointer(rebasing: base[offset..<offset + n])
        offset += n
        return slice
    }

    public mutating func u8(_ field: String) throws(WireError) -> UInt8 {
        try take(1, field)[0]
    }
    public mutating func u16(_ field: String) throws(WireError) -> UInt16 {
        let s = try take(2, field)
        return UInt16(s[0]) << 8 | UInt16(s[1])
    }
    public mutating func u32(_ field: String) throws(WireError) -> UInt32 {
        let s = try take(4, field)
        return s.reduce(0) { $0 << 8 | UInt32($1) }
    }
    public mutating func u64(_ field: String) throws(WireError) -> UInt64 {
        let s = try take(8, field)
        return s.reduce(0) { $0 << 8 | UInt64($1) }
    }
    public mutating func i64(_ field: String) throws(WireError) -> Int64 {
        Int64(bitPattern: try u64(field))
    }
    public mutating func bytes(_ n: Int, _ field: String) throws(WireError) -> [UInt8] {
        Array(try take(n, field))
    }
    public mutating func skip(_ n: Int, _ field: String) throws(WireError) {
        _ = try take(n, field)
    }
}
