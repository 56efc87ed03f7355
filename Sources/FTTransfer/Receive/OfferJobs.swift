import CURing
import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// What the receiver reads of its own copies to make offers, aside from
/// the ordered offload jobs (`Offload.runAside`: each may read gigabytes,
/// and other sessions' directories must not wait behind it): held
/// prefixes of interrupted pushes, whole-file digests (`--checksum`, and
/// the files of an adopted stage), and chunk digests of a file
/// to patch (`--sync`), copied into the new entry's part file as they are
/// read so that the chunks the sender keeps are already in place.
enum OfferJob: Sendable {
    case prefix(id: UInt32, fd: CInt, bytes: UInt64)
    case digest(id: UInt32, fd: CInt, size: UInt64)
    case patch(id: UInt32, old: CInt, part: CInt, oldSize: UInt64, chunkSize: UInt32)

    /// Closes what the job holds (a review that failed before it ran).
    func abandon() {
        switch self {
        case .prefix(_, let fd, _), .digest(_, let fd, _): close(fd)
        case .patch(_, let old, let part, _, _):
            close(old)
            if part >= 0 { close(part) }
        }
    }
}

enum OfferResult: @unchecked Sendable {
    case prefix(id: UInt32, HeldPrefix)
    case digest(id: UInt32, Digest128)
    case patch(id: UInt32, HeldCopy, digests: [Digest128])
    /// The copy could not be read: no offer, the entry comes whole.
    case none(id: UInt32)

    var id: UInt32 {
        switch self {
        case .prefix(let id, _), .digest(let id, _), .patch(let id, _, _), .none(let id): return id
        }
    }
}

/// A part file holding a copy of the receiver's old file, locked for this
/// session, waiting for the sender's plan: the chunks it keeps stay, the
/// others are overwritten by what arrives.
final class HeldCopy {
    private var fd: CInt
    let oldSize: UInt64
    let chunkSize: UInt32
    /// Set by the plan: which chunks of the copy the new file keeps.
    var reuse: [Bool] = []

    init(fd: CInt, oldSize: UInt64, chunkSize: UInt32) {
        self.fd = fd
        self.oldSize = oldSize
        self.chunkSize = chunkSize
    }

    /// Hands the fd (and its lock) to a sink.
    func take() -> CInt {
        defer { fd = -1 }
        return fd
    }

    /// The byte ranges of a `size`-byte file that the kept chunks cover.
    func keptRanges(size: UInt64) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        for (k, kept) in reuse.enumerated() where kept {
            let lo = UInt64(k) * UInt64(chunkSize)
            let hi = min(size, lo + UInt64(chunkSize))
            if lo < hi { out.append(lo..<hi) }
        }
        return out
    }

    deinit { if fd >= 0 { close(fd) } }
}

extension OfferJob {
    /// Runs on the offload thread.
    static func run(_ jobs: [OfferJob]) -> [OfferResult] {
        ReceiveFault.slow(.offer)
        return jobs.map { job in
            switch job {
            case .prefix(let id, let fd, let bytes):
                let hasher = StreamHasher()
                do {
                    try hasher.update(fd: fd, offset: 0, length: bytes)
                } catch {
                    close(fd)
                    return .none(id: id)
                }
                return .prefix(id: id, HeldPrefix(fd: fd, bytes: bytes, digest: hasher.digest(), hasher: hasher))
            case .digest(let id, let fd, let size):
                defer { close(fd) }
                let hasher = StreamHasher()
                do { try hasher.update(fd: fd, offset: 0, length: size) } catch { return .none(id: id) }
                return .digest(id: id, hasher.digest())
            case .patch(let id, let old, let part, let oldSize, let chunkSize):
                defer { close(old) }
                let copy = HeldCopy(fd: part, oldSize: oldSize, chunkSize: chunkSize)
                guard part < 0 || copyFile(from: old, to: part, bytes: oldSize) else { return .none(id: id) }
                var digests: [Digest128] = []
                digests.reserveCapacity(Int((oldSize + UInt64(chunkSize) - 1) / UInt64(chunkSize)))
                let hasher = StreamHasher()
                var at: UInt64 = 0
                while at < oldSize {
                    let n = min(UInt64(chunkSize), oldSize - at)
                    hasher.reset()
                    // From the old file, not the copy: a reflinked copy
                    // shares its blocks but not its page cache, so it
                    // would be read from disk. (The offer is only advice:
                    // the assembled file is hashed whole before it counts.)
                    do { try hasher.update(fd: old, offset: at, length: n) } catch { return .none(id: id) }
                    digests.append(hasher.digest())
                    at += n
                }
                return .patch(id: id, copy, digests: digests)
            }
        }
    }

    /// The old file's bytes into the part file: `copy_file_range`, which
    /// shares extents where the filesystem can (a reflink on btrfs and
    /// XFS) and copies in the kernel elsewhere; plain reads and writes if
    /// it is not supported between these files.
    static func copyFile(from src: CInt, to dst: CInt, bytes: UInt64) -> Bool {
        var inOff: Int64 = 0
        var outOff: Int64 = 0
        while UInt64(inOff) < bytes {
            let want = Int(min(bytes - UInt64(inOff), 1 << 30))
            let n = ft_copy_file_range(src, &inOff, dst, &outOff, want)
            if n > 0 { continue }
            if n == -Int(EINTR) { continue }
            // The file shrank under us: no offer.
            if n == 0 { return false }
            return copyByReading(from: src, to: dst, from: UInt64(inOff), bytes: bytes)
        }
        return true
    }

    private static func copyByReading(from src: CInt, to dst: CInt, from start: UInt64, bytes: UInt64) -> Bool {
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var at = start
        while at < bytes {
            let n = buf.withUnsafeMutableBytes { pread(src, $0.baseAddress, min($0.count, Int(bytes - at)), off_t(at)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            var done = 0
            while done < n {
                let w = buf.withUnsafeBytes { pwrite(dst, $0.baseAddress! + done, n - done, off_t(at) + off_t(done)) }
                if w < 0, errno == EINTR { continue }
                guard w > 0 else { return false }
                done += w
            }
            at += UInt64(n)
        }
        return true
    }
}
