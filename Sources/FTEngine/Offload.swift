import CURing
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Work that may block (making directories, sweeping stale partials)
/// runs on one helper thread; its result comes back to the loop's thread
/// through an eventfd the loop reads on the ring. The loop itself never
/// waits for it, so one session's slow work never stalls another.
///
/// Jobs run one at a time, in order. `then` runs on the loop thread, after
/// the loop's next wake-up. A job's owner counts it as in flight until
/// `then` has run.
///
/// Jobs that need no order among themselves (creating a frame's small
/// files) may instead go to `runSideBySide`, on lanes of their own: a
/// create's kernel work is per inode, so on a receiver with a second core
/// two frames are written at once, and a slow create there never holds
/// the ordered jobs back.
///
/// Jobs of one owner that need order among themselves but none relative
/// to anything else go to a serial queue of that owner's (`serialQueue`,
/// `run(on:)`): a receiver's removals (`--delete`'s prunes, sweeps of
/// stale partials, a stopped push's leftovers) run on one per session. A
/// prune of a directory of a million strays takes seconds, and neither
/// another session's directories nor its sweeps (which its end waits
/// for) should wait behind it. One queue per session, not a thread per
/// job: a `--delete` push over thousands of existing directories starts a
/// prune for each, all bound by the same disk.
///
/// Jobs that may take as long as something outside the loop decides
/// (resolving a name: a silent DNS server holds getaddrinfo for 10 s or
/// more; reading gigabytes of a file to hash it) go to `runAside`, each on
/// a thread of its own, so that they hold up neither the ordered jobs of
/// every other session nor each other.
public final class Offload: LoopHandler, @unchecked Sendable {
    private unowned let loop: EventLoop
    private let worker = DispatchQueue(label: "ft.offload")
    private let aside = DispatchQueue(label: "ft.offload.aside", attributes: .concurrent)
    /// As many lanes as CPUs this process may run on, up to four: on one
    /// CPU a second lane would only interleave with the first.
    public let lanes: Int
    private let laneQueues: [DispatchQueue]
    private var nextLane = 0
    private let eventFD: CInt
    private let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private var reg: Registration?
    private var armed = false
    /// Continuations whose job finished, to run on the loop thread.
    private let finished = Mutex<[UncheckedBox<() -> Void>]>([])
    /// Jobs handed out and not yet finished (loop thread only).
    public private(set) var pending = 0

    public init(loop: EventLoop) throws(IOError) {
        self.loop = loop
        eventFD = try makeEventFD()
        lanes = Int(min(4, ft_usable_cpus()))
        laneQueues = (0..<lanes).map { DispatchQueue(label: "ft.offload.lane\($0)") }
    }

    deinit {
        close(eventFD)
        buffer.deallocate()
    }

    /// Runs `work` on the helper thread, then `then` with its result on the
    /// loop's thread.
    public func run<T>(_ work: @escaping @Sendable () -> T, then: @escaping (T) -> Void) {
        submit(on: worker, work, then: then)
    }

    /// Like `run`, on the next lane: jobs given here may finish in any
    /// order relative to each other and to `run`'s.
    public func runSideBySide<T>(_ work: @escaping @Sendable () -> T, then: @escaping (T) -> Void) {
        let queue = laneQueues[nextLane]
        nextLane = (nextLane + 1) % lanes
        submit(on: queue, work, then: then)
    }

    /// A queue of jobs that run in order among themselves, and in any
    /// order relative to every other job. It holds no thread while idle.
    public struct SerialQueue: Sendable {
        fileprivate let queue: DispatchQueue
    }

    public func serialQueue(_ label: String) -> SerialQueue {
        SerialQueue(queue: DispatchQueue(label: label))
    }

    /// Like `run`, on `queue`.
    public func run<T>(on queue: SerialQueue, _ work: @escaping @Sendable () -> T, then: @escaping (T) -> Void) {
        submit(on: queue.queue, work, then: then)
    }

    /// Like `run`, beside every other job: for work that can wait on the
    /// network for long.
    public func runAside<T>(_ work: @escaping @Sendable () -> T, then: @escaping (T) -> Void) {
        submit(on: aside, work, then: then)
    }

    private func submit<T>(on queue: DispatchQueue, _ work: @escaping @Sendable () -> T, then: @escaping (T) -> Void) {
        arm()
        pending += 1
        let thenBox = UncheckedBox(then)
        queue.async { [self] in
            let result = UncheckedBox(work())
            deliver { [self] in
                pending -= 1
                thenBox.value(result.value)
            }
        }
    }

    /// From any thread: runs `body` on the loop's thread. The loop must
    /// have called `arm()` (or `run`) before.
    public func post(_ body: @escaping () -> Void) {
        deliver(body)
    }

    private func deliver(_ body: @escaping () -> Void) {
        finished.withLock { $0.append(UncheckedBox(body)) }
        signalEventFD(eventFD)
    }

    /// Starts watching the eventfd (loop thread); the watch then stays on.
    public func arm() {
        if reg == nil { reg = loop.register(self) }
        guard !armed, let reg else { return }
        armed = true
        loop.backend.queue(.read(fd: eventFD, buffer: buffer, length: 8, offset: Op.noOffset), reg.userData(1))
    }

    public func complete(_ c: Completion, on loop: EventLoop) {
        armed = false
        let ready = finished.withLock { list in
            defer { list.removeAll() }
            return list
        }
        arm()
        for r in ready { r.value() }
    }
}

/// Carries a value across threads where the code guarantees only one
/// thread touches it at a time (handed over, never shared).
public struct UncheckedBox<T>: @unchecked Sendable {
    public let value: T
    public init(_ value: T) { self.value = value }
}
