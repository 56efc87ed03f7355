import CURing
import FTEngine
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Reads the files of one `small-files` frame into a staging buffer before
/// the frame is built.
///
/// Why: read one after another, a tree that is not in the page cache costs
/// a disk round trip per file — 129 µs a file on this VM's ext4 even after
/// the scan's statx, while with 64 reads in flight the same files cost
/// 25 µs each (5×). Each file is first read without waiting (preadv2 with
/// RWF_NOWAIT: a page-cached file costs the one syscall it always did, and
/// batching warm reads on the ring was measured slower, see
/// docs/BENCHMARKS.md); only what is not in memory goes to the ring, up to
/// `lanes` reads at once (`InlineReads` says which filesystems are read
/// plainly and which go to the ring whole).
///
/// Lanes: eight registrations of this handler times the tag's eight
/// indexes. The staging buffer is reused frame after frame and lives until
/// the last read is in, even when the push failed meanwhile.
final class SmallReads: LoopHandler {
    struct File {
        let id: UInt32
        let fd: CInt
        /// The filesystem it is on (`InlineReads` remembers what each allows).
        let device: UInt64
        /// Where its bytes go in `staging`.
        let offset: Int
        let size: Int
    }

    static let lanes = 64
    private static let groups = lanes / (OpTag.maxIndex + 1)

    private unowned let loop: EventLoop
    private var regs: [Registration] = []
    private(set) var staging = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var files: [File] = []
    /// Bytes of each file read so far.
    private var done: [Int] = []
    /// Files still to be put on a lane, in order.
    private var queue: [Int] = []
    private var next = 0
    /// The file each lane reads (-1: free).
    private var lane = [Int](repeating: -1, count: lanes)
    private var inline = InlineReads()
    private var finished: (() -> Void)?
    enum Failure: Error {
        /// Fewer bytes than its size: it shrank since it was announced.
        case shrank
        case error(Errno)
    }

    /// Files that could not be read, and why.
    private(set) var failed: [UInt32: Failure] = [:]
    private(set) var inflight = 0
    /// Files that were not all in the page cache: read on the ring.
    private(set) var coldFiles = 0

    /// Whether a frame's files are still being read.
    var busy: Bool { finished != nil }

    init(loop: EventLoop) {
        self.loop = loop
    }

    deinit { staging.deallocate() }

    /// At least `bytes` of staging for the next frame's files.
    func reserve(_ bytes: Int) {
        precondition(!busy)
        guard staging.count < bytes else { return }
        staging.deallocate()
        staging = .allocate(byteCount: max(bytes, 64 << 10), alignment: 64)
    }

    /// Reads every file into its place in `staging`. True when all are in
    /// (or failed) already; otherwise `then` runs once the ring's reads are.
    func read(_ files: [File], then: @escaping () -> Void) -> Bool {
        precondition(!busy)
        self.files = files
        done = [Int](repeating: 0, count: files.count)
        queue.removeAll(keepingCapacity: true)
        next = 0
        failed.removeAll()
        for i in files.indices { readNow(i) }
        guard !queue.isEmpty else { return true }
        coldFiles += queue.count
        if regs.isEmpty { regs = (0..<Self.groups).map { _ in loop.register(self) } }
        finished = then
        for l in 0..<Self.lanes where next < queue.count {
            lane[l] = queue[next]
            next += 1
            submit(l)
        }
        return false
    }

    /// As much of file `i` as can be had without waiting; the rest is queued.
    private func readNow(_ i: Int) {
        let f = files[i]
        guard f.size > 0 else { return }  // nothing to read (and staging may be empty)
        switch inline.read(f.fd, device: f.device, into: staging.baseAddress! + f.offset, count: f.size, at: 0, done: &done[i]) {
        case .complete: break
        case .wouldWait:
            SourceFile.blocking(f.fd)
            queue.append(i)
        case .ended: failed[f.id] = .shrank
        case .failed(let e): failed[f.id] = .error(e)
        }
    }

    private func submit(_ l: Int) {
        let i = lane[l]
        let f = files[i]
        inflight += 1
        let reg = regs[l / (OpTag.maxIndex + 1)]
        loop.backend.queue(.read(fd: f.fd, buffer: staging.baseAddress! + f.offset + done[i], length: f.size - done[i],
                                 offset: Int64(done[i])), reg.userData(OpTag(.smallRead, l % (OpTag.maxIndex + 1))))
    }

    func complete(_ c: Completion, on loop: EventLoop) {
        guard let tag = c.tag, tag.op == .smallRead,
              let group = regs.firstIndex(where: { $0.slot == c.userData.slot }) else { return }
        inflight -= 1
        let l = group * (OpTag.maxIndex + 1) + tag.index
        let i = lane[l]
        let f = files[i]
        if c.result > 0 {
            done[i] += Int(c.result)
            if done[i] < f.size { return submit(l) }
        } else if c.result == 0 {
            failed[f.id] = .shrank
        } else if c.result == -EINTR || c.result == -EAGAIN {
            return submit(l)
        } else {
            failed[f.id] = .error(Errno(rawValue: -c.result))
        }
        if next < queue.count {
            lane[l] = queue[next]
            next += 1
            return submit(l)
        }
        lane[l] = -1
        if inflight == 0, let then = finished {
            finished = nil
            then()
        }
    }

    func tick(now: UInt64, on loop: EventLoop) {}
}
