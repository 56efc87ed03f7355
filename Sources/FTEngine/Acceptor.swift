#if canImport(Glibc)
import Glibc
#endif

/// A listening socket that keeps one accept in flight on the ring and hands
/// each new connection to its owner. After a failed accept (EMFILE and
/// friends) it tries again on the next tick instead of spinning.
public final class Acceptor: LoopHandler {
    public let address: SocketAddress
    private let listener: Listener
    private unowned let loop: EventLoop
    private var reg: Registration?
    private var accepting = false
    private var stopped = false
    private var onAccept: (CInt) -> Void = { close($0) }
    private var onError: (IOError) -> Void = { _ in }

    /// Binds and listens now, so the address is known before `start`.
    public init(_ endpoint: Endpoint, loop: EventLoop) throws(IOError) {
        listener = try Socket.listen(endpoint)
        address = listener.address
        self.loop = loop
        loop.backend.adopt(socket: listener.fd.raw)
    }

    public func start(onAccept: @escaping (CInt) -> Void, onError: @escaping (IOError) -> Void) {
        self.onAccept = onAccept
        self.onError = onError
        if reg == nil { reg = loop.register(self) }
        arm()
    }

    /// No more connections; a pending accept is cancelled.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        if accepting, let reg { loop.backend.queue(.cancelFD(fd: listener.fd.raw), reg.userData(2)) }
    }

    private func arm() {
        guard !accepting, !stopped, let reg else { return }
        accepting = true
        loop.backend.queue(.accept(fd: listener.fd.raw), reg.userData(1))
    }

    public func complete(_ c: Completion, on loop: EventLoop) {
        guard c.userData.tag == 1 else { return }
        accepting = false
        if c.result >= 0 {
            if stopped { close(c.result) } else { onAccept(c.result) }
            arm()
        } else if c.result != -ECANCELED {
            onError(IOError(result: c.result, "accept on", address.description))
        }
    }

    public func tick(now: UInt64, on loop: EventLoop) { arm() }
}

/// An eventfd the loop watches: a write to `descriptor` (from a signal
/// handler or another thread) calls `onStop` on the loop's thread.
public final class StopSignal: LoopHandler {
    public let descriptor: CInt
    private let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private unowned let loop: EventLoop
    private var onStop: () -> Void = {}

    public init(loop: EventLoop) throws(IOError) {
        descriptor = try makeEventFD()
        self.loop = loop
    }

    deinit {
        close(descriptor)
        buffer.deallocate()
    }

    public func start(onStop: @escaping () -> Void) {
        self.onStop = onStop
        let reg = loop.register(self)
        loop.backend.queue(.read(fd: descriptor, buffer: buffer, length: 8, offset: Op.noOffset), reg.userData(1))
    }

    public func complete(_ c: Completion, on loop: EventLoop) { onStop() }
}
