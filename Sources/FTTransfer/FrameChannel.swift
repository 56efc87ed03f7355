import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Tags a session puts in its operations' user data.
enum Tag: UInt8 {
    case connect = 1
    case readPrefix
    case readBody
    case sendControl
    case spliceIn
    case spliceOut
    case payloadRecv
    case payloadWrite
    case sendChunk
    case chunkHeader
    case chunkRead
    case streamRead
    case shutdown
    case pace
}

/// Frames over one socket: reads each frame exactly (8-byte prefix, then
/// exactly its body) so the bytes after a `data` header stay in the socket
/// for the payload path; and sends control frames, batching whatever queued
/// up while a send was in flight into one write.
final class FrameChannel {
    let fd: CInt
    let peer: String

    private let prefix = UnsafeMutableRawBufferPointer.allocate(byteCount: FramePrefix.size, alignment: 8)
    private var body = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    private var pendingPrefix: FramePrefix?
    private(set) var reading = false

    private var queued: [UInt8] = []
    private var out = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    private var outLength = 0
    private(set) var writing = false

    init(fd: CInt, peer: String) {
        self.fd = fd
        self.peer = peer
        queued.reserveCapacity(4096)
    }

    deinit {
        prefix.deallocate()
        body.deallocate()
        out.deallocate()
    }

    enum ReadEvent {
        case frame(Frame)
        /// The prefix arrived; the body read is queued.
        case pending
        /// The peer closed cleanly between frames.
        case closed
        case failed(TransferError)
    }

    /// Queues the read of the next frame's prefix.
    func readNext(_ loop: EventLoop, _ reg: Registration) {
        precondition(!reading)
        reading = true
        loop.backend.queue(.recv(fd: fd, buffer: prefix.baseAddress!, length: FramePrefix.size, flags: CInt(MSG_WAITALL)),
                           reg.userData(Tag.readPrefix.rawValue))
    }

    func onRead(_ c: Completion, _ loop: EventLoop, _ reg: Registration) -> ReadEvent {
        reading = false
        let isPrefix = c.userData.tag == Tag.readPrefix.rawValue
        let want = isPrefix ? FramePrefix.size : Int(pendingPrefix!.length)
        if c.result < 0 {
            if c.result == -ECANCELED { return .failed(.disconnected("cancelled", peer: peer)) }
            return .failed(.io(IOError(result: c.result, "receive from", peer)))
        }
        if c.result == 0 && isPrefix { return .closed }
        if Int(c.result) < want {
            let what = isPrefix ? "a frame prefix" : "a \(pendingPrefix!.type) frame"
            return .failed(.disconnected("closed in the middle of \(what) (\(c.result) of \(want) bytes)", peer: peer))
        }
        do {
            if isPrefix {
                let p = try FramePrefix.decode(UnsafeRawBufferPointer(prefix))
                if p.length == 0 {
                    return .frame(try FrameCodec.decodeBody(p, UnsafeRawBufferPointer(start: body.baseAddress, count: 0)))
                }
                if Int(p.length) > body.count {
                    // Capped by FramePrefix.decode: a peer cannot ask for more.
                    body.deallocate()
                    body = .allocate(byteCount: Int(p.length), alignment: 8)
                }
                pendingPrefix = p
                reading = true
                loop.backend.queue(.recv(fd: fd, buffer: body.baseAddress!, length: Int(p.length), flags: CInt(MSG_WAITALL)),
                                   reg.userData(Tag.readBody.rawValue))
                return .pending
            }
            let p = pendingPrefix!
            pendingPrefix = nil
            let frame = try FrameCodec.decodeBody(p, UnsafeRawBufferPointer(start: body.baseAddress, count: Int(p.length)))
            if body.count > 1 << 16 {
                // Give back a manifest-sized buffer once the frame is decoded.
                body.deallocate()
                body = .allocate(byteCount: 4096, alignment: 8)
            }
            return .frame(frame)
        } catch {
            return .failed(.protocolViolation(error.description, peer: peer))
        }
    }

    /// Queues a control frame; it goes out with the next `flush`.
    func enqueue(_ frame: Frame) {
        queued.append(contentsOf: FrameCodec.encode(frame))
    }

    var hasQueued: Bool { !queued.isEmpty }

    /// Sends everything queued as one write, if no write is in flight.
    @discardableResult
    func flush(_ loop: EventLoop, _ reg: Registration, more: Bool = false) -> Bool {
        guard !writing, !queued.isEmpty else { return false }
        if queued.count > out.count {
            out.deallocate()
            out = .allocate(byteCount: queued.count, alignment: 8)
        }
        out.copyBytes(from: queued)
        outLength = queued.count
        queued.removeAll(keepingCapacity: queued.count <= 1 << 16)
        writing = true
        let flags = CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL) | (more ? CInt(MSG_MORE) : 0)
        loop.backend.queue(.send(fd: fd, buffer: out.baseAddress!, length: outLength, flags: flags),
                           reg.userData(Tag.sendControl.rawValue))
        return true
    }

    func onSent(_ c: Completion) -> TransferError? {
        writing = false
        if c.result < 0 { return .io(IOError(result: c.result, "send to", peer)) }
        if Int(c.result) < outLength { return .disconnected("sent \(c.result) of \(outLength) bytes", peer: peer) }
        return nil
    }
}
