/// Outgoing bytes of one connection: appended to in place, so a frame can be
/// built where it will be sent from, and handed to the kernel as it is.
/// A channel keeps two and swaps them at each send, so queueing behind a
/// write in flight never copies what was queued.
final class OutBuffer {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    private(set) var count = 0
    /// Kept across sends up to this size (a small-files batch is ~1 MiB);
    /// a bigger burst is given back when it has been sent.
    private static let keep = 4 << 20
    private static let initial = 4096
    private static let step = 64 << 10

    init() {
        capacity = Self.initial
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    var isEmpty: Bool { count == 0 }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Room for `n` more bytes after what is queued; `commit` says how many
    /// were written.
    func reserve(_ n: Int) -> UnsafeMutableRawBufferPointer {
        if count + n > capacity {
            // Doubling up to 64 KiB; past it, what is asked for in 64 KiB
            // steps, and at least half as much again (a burst of appends
            // still copies O(n) in all): a 1 MiB small-files frame plus a
            // few queued bytes doubled each of the two buffers to 2 MiB,
            // half of it never used.
            let need = count + n
            var grown = capacity
            while grown < need, grown < Self.step { grown *= 2 }
            if grown < need { grown = max((need + Self.step - 1) / Self.step * Self.step, capacity + capacity / 2) }
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
            fresh.copyMemory(from: base, byteCount: count)
            base.deallocate()
            base = fresh
            capacity = grown
        }
        return UnsafeMutableRawBufferPointer(start: base + count, count: n)
    }

    func commit(_ n: Int) {
        precondition(count + n <= capacity)
        count += n
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        reserve(bytes.count).copyMemory(from: bytes)
        count += bytes.count
    }

    func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Empties the buffer once the kernel is done with its bytes.
    func reset() {
        count = 0
        if capacity > Self.keep {
            base.deallocate()
            capacity = Self.initial
            base = .allocate(byteCount: capacity, alignment: 16)
        }
    }
}
