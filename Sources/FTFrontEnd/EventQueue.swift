import Dispatch
import FTTransfer
import Synchronization

/// Carries `--json` events from a push's loop thread to a thread of their
/// own, which encodes and writes them.
///
/// Why: the library calls its progress handler on the loop thread, and a
/// `file-done` line per file cost that thread about 20 µs of encoding and
/// a write(2) each (100,000 small files: 2 s of a 5 s receive). Worse, a
/// reader of stdout that stops reading would have stopped the loop, and
/// with it every session of an `ft recv`. Now the loop only appends.
///
/// Bounded: past `cap` waiting events, `file-done` and `progress` events
/// are dropped (and counted, and said on stderr once the writer catches
/// up); the others — start, done, errors — are always kept, and there are
/// a few per push.
package final class EventQueue: Sendable {
    private enum Item: Sendable {
        case event(ProgressEvent)
        case barrier(DispatchSemaphore)
    }

    private struct State: Sendable {
        var items: [Item] = []
        var dropped = 0
        var writing = false
        /// Taken by the writer and not yet written: they count toward the cap.
        var taken = 0

        /// Whether the caller must start the writer (it is not running).
        mutating func start() -> Bool {
            if writing { return false }
            writing = true
            return true
        }
    }

    package static let cap = 65_536
    /// Owns this queue, and lives as long.
    private unowned let renderer: ProgressRenderer
    private let state = Mutex(State())
    private let worker = DispatchQueue(label: "ft.events")

    package init(_ renderer: ProgressRenderer) {
        self.renderer = renderer
    }

    /// From any thread; never waits for the output.
    package func post(_ event: ProgressEvent) {
        let start = state.withLock { s -> Bool in
            if s.items.count + s.taken >= Self.cap {
                switch event {
                case .fileDone: s.dropped += 1; return false
                case .progress: return false
                default: break
                }
            }
            s.items.append(.event(event))
            return s.start()
        }
        if start { worker.async { self.write() } }
    }

    /// Waits until everything posted so far is written; the renderer may
    /// then be read (its failures) and written to from the caller.
    package func drain() {
        let done = DispatchSemaphore(value: 0)
        let start = state.withLock { s -> Bool in
            s.items.append(.barrier(done))
            return s.start()
        }
        if start { worker.async { self.write() } }
        done.wait()
    }

    /// Lines wait here and leave in one write(2) per batch. A write per
    /// line cost a one-core receiver of 100,000 small files, its stdout a
    /// pipe read by `cat`, 1.09x the CPU (7 alternating runs, twice).
    /// Written before a barrier is signalled, and before this grows past
    /// `flushAt`; what a reader sees is whole lines, in order, as before.
    private static let flushAt = 64 << 10

    private func write() {
        var out: [UInt8] = []
        out.reserveCapacity(Self.flushAt + 4096)
        while true {
            // A bounded batch: what the writer holds counts toward the cap,
            // so the queue never holds more than `cap` however it is timed.
            var (batch, dropped) = state.withLock { s -> ([Item], Int) in
                let n = min(s.items.count, 1024)
                let batch = Array(s.items.prefix(n))
                s.items.removeFirst(n)
                s.taken = n
                defer { s.dropped = 0 }
                if batch.isEmpty { s.writing = false }
                return (batch, s.dropped)
            }
            if batch.isEmpty { return }
            for item in batch {
                switch item {
                case .event(let e):
                    renderer.appendJSON(e, to: &out)
                    if out.count >= Self.flushAt { flush(&out) }
                case .barrier(let done):
                    flush(&out)
                    // Said before whoever drained goes on to print its own lines.
                    warnDropped(&dropped)
                    done.signal()
                }
            }
            flush(&out)
            warnDropped(&dropped)
        }
    }

    private func flush(_ out: inout [UInt8]) {
        guard !out.isEmpty else { return }
        renderer.json.write(bytes: out)
        out.removeAll(keepingCapacity: true)
    }

    private func warnDropped(_ dropped: inout Int) {
        guard dropped > 0 else { return }
        renderer.warn("standard output fell behind: \(dropped) file-done \(dropped == 1 ? "event was" : "events were") not written (the transfer itself is unaffected)")
        dropped = 0
    }
}
