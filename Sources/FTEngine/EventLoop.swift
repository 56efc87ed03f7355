import CURing
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Something that owns operations on the loop. Completions come back to the
/// handler registered under the slot packed in their user data.
public protocol LoopHandler: AnyObject {
    func complete(_ completion: Completion, on loop: EventLoop)
    /// Called about every `EventLoop.tickInterval`, for deadlines.
    func tick(now: UInt64, on loop: EventLoop)
}

extension LoopHandler {
    public func tick(now: UInt64, on loop: EventLoop) {}
}

/// A handler's place in the loop's table.
public struct Registration: Equatable, Sendable {
    public let slot: UInt32
    public let generation: UInt16

    public func userData(_ tag: UInt8) -> UserData {
        UserData(slot: slot, generation: generation, tag: tag)
    }
}

/// One thread's engine: a backend, the table of handlers its completions go
/// to, a periodic tick for deadlines, and a wake-up another thread can use.
public final class EventLoop {
    public static let tickInterval: UInt64 = 250_000_000

    public let backend: any IOBackend
    public let logger: Logger

    private struct Entry {
        var handler: LoopHandler?
        var generation: UInt16
    }

    private var table: [Entry] = []
    private var free: [UInt32] = []
    private var running = false
    private var tickArmed = false
    private let wakeFD: CInt
    private let wakeBuffer: UnsafeMutablePointer<UInt64>
    private var wakeArmed = false
    private static let internalSlot = UInt32.max
    private static let tickTag: UInt8 = 1
    private static let wakeTag: UInt8 = 2

    public init(backend: any IOBackend, logger: Logger) throws(IOError) {
        self.backend = backend
        self.logger = logger
        wakeFD = try makeEventFD()
        wakeBuffer = .allocate(capacity: 1)
        // A peer that closes early must cost us an EPIPE, not the process.
        signal(SIGPIPE, SIG_IGN)
    }

    deinit {
        close(wakeFD)
        wakeBuffer.deallocate()
    }

    public var stats: EngineStats { backend.stats }

    // MARK: Handlers

    public func register(_ handler: LoopHandler) -> Registration {
        if let slot = free.popLast() {
            table[Int(slot)].handler = handler
            return Registration(slot: slot, generation: table[Int(slot)].generation)
        }
        table.append(Entry(handler: handler, generation: 0))
        return Registration(slot: UInt32(table.count - 1), generation: 0)
    }

    /// Frees the slot. Call only when the handler has no operation in flight:
    /// a late completion would find a different handler (or none).
    public func unregister(_ r: Registration) {
        guard Int(r.slot) < table.count, table[Int(r.slot)].generation == r.generation else { return }
        table[Int(r.slot)].handler = nil
        table[Int(r.slot)].generation &+= 1
        free.append(r.slot)
    }

    public var handlerCount: Int { table.count - free.count }

    // MARK: Running

    /// Runs until `stop()` or until `done()` returns true after a batch.
    public func run(until done: () -> Bool = { false }) throws(IOError) {
        running = true
        armWake()
        armTick()
        while running && !done() {
            var busySince: UInt64 = 0
            try backend.run(timeoutNanoseconds: nil) { c in
                if busySince == 0 { busySince = monotonicNanoseconds() }
                dispatch(c)
            }
            if busySince != 0 { noteBusy(monotonicNanoseconds() - busySince) }
        }
    }

    /// The longest the loop spent on one batch of completions, in
    /// nanoseconds: while it works on one, every other connection on this
    /// loop waits. What one session's input may cost the others.
    public private(set) var longestBusy: UInt64 = 0
    /// Busy spells over this are logged (debug), with their length.
    public static let stallReportNanoseconds: UInt64 = 100_000_000

    private func noteBusy(_ ns: UInt64) {
        if ns > longestBusy { longestBusy = ns }
        if ns > Self.stallReportNanoseconds {
            logger.debug("the loop was busy for \(ns / 1_000_000) ms on one batch of completions; every other connection waited that long")
        }
    }

    /// Stops `run` after the current batch. Call from the loop's thread.
    public func stop() { running = false }

    /// Makes `run` return from another thread (or a signal handler): only an
    /// eventfd write, which is async-signal-safe.
    public func wakeAndStop() {
        signalEventFD(wakeFD)
    }

    private func dispatch(_ c: Completion) {
        let ud = c.userData
        if ud.slot == Self.internalSlot {
            switch ud.tag {
            case Self.tickTag:
                tickArmed = false
                let now = monotonicNanoseconds()
                for e in table { e.handler?.tick(now: now, on: self) }
                if running { armTick() }
            case Self.wakeTag:
                wakeArmed = false
                running = false
            default:
                break
            }
            return
        }
        guard Int(ud.slot) < table.count else { return }
        let entry = table[Int(ud.slot)]
        guard entry.generation == ud.generation, let handler = entry.handler else {
            logger.trace("stale completion", metadata: ["slot": "\(ud.slot)", "tag": "\(ud.tag)"])
            return
        }
        handler.complete(c, on: self)
    }

    private func armTick() {
        guard !tickArmed else { return }
        tickArmed = true
        backend.queue(.timeout(nanoseconds: Self.tickInterval), UserData(slot: Self.internalSlot, generation: 0, tag: Self.tickTag))
    }

    private func armWake() {
        guard !wakeArmed else { return }
        wakeArmed = true
        backend.queue(.read(fd: wakeFD, buffer: wakeBuffer, length: 8, offset: Op.noOffset),
                      UserData(slot: Self.internalSlot, generation: 0, tag: Self.wakeTag))
    }
}

/// A close-on-exec eventfd, for waking a loop from another thread.
public func makeEventFD() throws(IOError) -> CInt {
    try retryingEINTR("create an eventfd") { ft_eventfd() }
}

/// Adds one to an eventfd's counter, waking whoever reads it. Async-signal
/// safe (a single write), so signal handlers may call it.
@inline(__always)
public func signalEventFD(_ fd: CInt) {
    var one: UInt64 = 1
    _ = write(fd, &one, 8)
}
