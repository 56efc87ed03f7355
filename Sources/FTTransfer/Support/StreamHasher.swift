import CXXHash
import FTEngine
import FTWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Zeros to hash holes with: read-only, shared by every hasher.
nonisolated(unsafe) private let zeros = UnsafeRawBufferPointer(UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64).initializeMemoryZero())

extension UnsafeMutableRawBufferPointer {
    fileprivate func initializeMemoryZero() -> UnsafeMutableRawBufferPointer {
        initializeMemory(as: UInt8.self, repeating: 0)
        return self
    }
}

/// Streaming xxh3-128. One state per file being hashed, reused across files
/// with `reset()`; `update` allocates nothing.
package final class StreamHasher {
    private let state: OpaquePointer

    package init() {
        guard let s = ft_xxh3_new() else { fatalError("out of memory creating an xxh3 state") }
        state = s
    }

    deinit {
        ft_xxh3_free(state)
        readBuffer.deallocate()
    }

    /// "avx2" or "sse2": the code that hashes on this CPU.
    package static var implementation: String { String(cString: ft_xxh3_implementation()) }

    package func reset() { ft_xxh3_reset(state) }

    package func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        ft_xxh3_update(state, base, bytes.count)
    }

    /// Feeds `count` zero bytes (a hole) from one buffer in memory.
    package func updateZeros(_ count: UInt64) {
        var left = count
        while left > 0 {
            let n = Int(min(left, UInt64(zeros.count)))
            update(UnsafeRawBufferPointer(rebasing: zeros[..<n]))
            left -= UInt64(n)
        }
    }

    package func digest() -> Digest128 {
        var d = Digest128.zero
        ft_xxh3_digest(state, &d.high, &d.low)
        return d
    }

    /// One-shot hash of a buffer.
    package static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest128 {
        var d = Digest128.zero
        ft_xxh3_oneshot(bytes.baseAddress, bytes.count, &d.high, &d.low)
        return d
    }

    /// Feeds `length` bytes of `fd` from `offset`, read through a buffer
    /// of this hasher's, a piece at a time, each hashed while in L2. This
    /// replaced hashing through mapped windows: pinned to one core, 1 GiB
    /// sent with sendfile and hashed ahead took 0.84-0.86 CPU-s on the
    /// sender mapped, 0.64-0.75 read (mapping, populating and unmapping
    /// windows costs more than the copy), and the receiver's splice path
    /// 1.10-1.18 mapped against 1.02-1.13 read.
    package func update(fd: CInt, offset: UInt64, length: UInt64) throws(IOError) {
        if readBuffer.count == 0 { readBuffer = .allocate(byteCount: Self.piece, alignment: 4096) }
        let r = ft_xxh3_update_read(state, fd, offset, length, readBuffer.baseAddress, readBuffer.count)
        if r == -EIO { throw IOError(.ioError, "read for hashing (the file shrank while being read)") }
        if r < 0 { throw IOError(Errno(rawValue: -r), "read for hashing") }
    }

    private var readBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// Half this core's L2: the piece read, then hashed, stays there.
    static let piece = 256 << 10
}

