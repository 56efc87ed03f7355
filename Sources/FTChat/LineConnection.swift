import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

protocol LineConnectionDelegate: AnyObject {
    func connection(_ c: LineConnection, received item: LineBuffer.Item)
    /// The connection is gone and its fd closed; `reason` is for people.
    func connectionClosed(_ c: LineConnection, reason: String)
}

/// One TCP chat connection on the ring: lines in, with the line cap; bytes
/// out through a bounded outbox with one send in flight. A peer that stops
/// reading is cut off once its outbox passes the cap, so it cannot make us
/// hold unbounded memory.
final class LineConnection: LoopHandler {
    static let outboxCap = 1 << 20

    let fd: CInt
    let peer: String
    weak var delegate: LineConnectionDelegate?
    private unowned let loop: EventLoop
    private var reg: Registration!
    private var lines = LineBuffer()
    private let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 10, alignment: 16)
    private var outbox: [UInt8] = []
    private var sending = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    private var sendingCount = 0
    private var inflight = 0
    private var writeShut = false
    private var closeReason: String?

    /// A member whose send has not moved for this long stopped reading:
    /// it is cut off, so it cannot hold a seat (and its buffers) forever.
    static let stalledSendSeconds: UInt64 = 30
    private var sendQueuedAt: UInt64 = 0

    private static let recvTag: UInt8 = 1
    private static let sendTag: UInt8 = 2

    init(fd: CInt, peer: String, loop: EventLoop) {
        self.fd = fd
        self.peer = peer
        self.loop = loop
    }

    deinit {
        input.deallocate()
        sending.deallocate()
    }

    var isOpen: Bool { closeReason == nil }

    func start() {
        reg = loop.register(self)
        loop.backend.adopt(socket: fd)
        receive()
    }

    private func receive() {
        inflight += 1
        loop.backend.queue(.recv(fd: fd, buffer: input.baseAddress!, length: input.count, flags: 0), reg.userData(Self.recvTag))
    }

    /// Queues bytes; false (and the connection closes) if the peer is not
    /// reading and the outbox would pass its cap.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        guard isOpen, !writeShut else { return false }
        guard outbox.count + bytes.count <= Self.outboxCap else {
            close("not reading: over \(Self.outboxCap >> 20) MiB queued for it")
            return false
        }
        outbox.append(contentsOf: bytes)
        flush()
        return true
    }

    /// Half-closes once everything queued is sent (stdin reached EOF).
    func finishWriting() {
        writeShut = true
        flush()
    }

    var hasPendingOutput: Bool { sendingCount > 0 || !outbox.isEmpty }

    private func flush() {
        guard sendingCount == 0, isOpen else { return }
        if outbox.isEmpty {
            if writeShut { _ = shutdown(fd, CInt(SHUT_WR)) }
            return
        }
        if outbox.count > sending.count {
            sending.deallocate()
            sending = .allocate(byteCount: max(outbox.count, sending.count * 2), alignment: 16)
        }
        sending.copyBytes(from: outbox)
        sendingCount = outbox.count
        sendQueuedAt = monotonicNanoseconds()
        outbox.removeAll(keepingCapacity: true)
        inflight += 1
        loop.backend.queue(.send(fd: fd, buffer: sending.baseAddress!, length: sendingCount,
                                 flags: CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL)), reg.userData(Self.sendTag))
    }

    func complete(_ c: Completion, on loop: EventLoop) {
        inflight -= 1
        switch c.userData.tag {
        case Self.recvTag:
            guard isOpen else { break }
            if c.result <= 0 {
                let reason = c.result == 0 ? "closed the connection" : IOError.explain(.init(rawValue: -c.result))
                if let last = lines.finish() { delegate?.connection(self, received: last) }
                close(reason)
            } else {
                for item in lines.append(UnsafeRawBufferPointer(start: input.baseAddress, count: Int(c.result))) {
                    delegate?.connection(self, received: item)
                }
                if isOpen { receive() }
            }
        case Self.sendTag:
            sendingCount = 0
            if c.result < 0, isOpen {
                close(IOError.explain(.init(rawValue: -c.result)))
            } else {
                flush()
            }
        default:
            break
        }
        reap()
    }

    func tick(now: UInt64, on loop: EventLoop) {
        guard isOpen, sendingCount > 0, now &- sendQueuedAt > Self.stalledSendSeconds * 1_000_000_000 else { return }
        close("not reading: nothing it was sent moved for \(Self.stalledSendSeconds) s")
    }

    /// Ends the connection: pending operations complete, then the fd closes.
    func close(_ reason: String) {
        guard closeReason == nil else { return }
        closeReason = reason
        _ = shutdown(fd, CInt(SHUT_RDWR))
        reap()
    }

    private func reap() {
        guard let reason = closeReason, inflight == 0, reg != nil else { return }
        loop.unregister(reg)
        reg = nil
        Glibc.close(fd)
        delegate?.connectionClosed(self, reason: reason)
    }
}
