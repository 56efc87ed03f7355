import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Frames over one socket: reads each frame exactly (8-byte prefix, then
/// exactly its body) so the bytes after a `data` header stay in the socket
/// for the payload path; and sends control frames, batching whatever queued
/// up while a send was in flight into one write.
///
/// The channel queues its own reads and sends under its owner's
/// registration and counts them (`inflight`); the owner hands it the
/// completions tagged `readPrefix`, `readBody` and `sendControl`. Reading
/// is here; queueing, sealing and sending in `FrameChannel+Sending.swift`.
final class FrameChannel {
    let fd: CInt
    let peer: String
    unowned let loop: EventLoop
    let reg: Registration
    /// Reads and sends of ours still in flight.
    var inflight = 0

    private let prefix = UnsafeMutableRawBufferPointer.allocate(byteCount: FramePrefix.size, alignment: 8)
    private var body = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    private var pendingPrefix: FramePrefix?
    private(set) var reading = false

    // The sending side's state (FrameChannel+Sending.swift).
    var queued = OutBuffer()
    /// What the send in flight is reading; swapped with `queued` per send.
    var out = OutBuffer()
    var writing = false
    /// Sealed records sent from their owner's buffer (`enqueueSealed(
    /// lending:)`), each after `at` bytes of `queued`: queued, and in
    /// flight. Copying each record of a chunk into `queued` instead was
    /// measured at ~25% of a sealing sender's CPU.
    struct Loan {
        var at: Int
        var bytes: UnsafeRawBufferPointer
    }
    var loans: [Loan] = []
    var loansOut: [Loan] = []
    static let maxLoans = 8
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: 2 * maxLoans + 1)
    let message = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
    /// Bytes the send in flight carries, lent records included.
    var outCount = 0

    /// Read ahead into a buffer and decode many frames per recv. Only where
    /// no payload is ever spliced out of the socket: the sender's side,
    /// which reads acknowledgements (one per file) and nothing else.
    let buffered: Bool
    private var inbox = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var inStart = 0
    private var inEnd = 0

    /// Before the peer proved the code, frames are small (hello, proof,
    /// error): a stranger may not make us hold more than this per
    /// connection, whatever its frame types allow later.
    var bodyLimit: UInt32?
    static let handshakeBodyLimit: UInt32 = 4096

    /// With `--encrypt`, set once the code's proofs are exchanged: from then
    /// on frames travel in sealed records (SessionCipher).
    var cipher: SessionCipher?
    /// Without `--encrypt`, set once the code's proofs are exchanged: from
    /// then on every frame but data headers carries a tag (SessionMAC).
    var mac: SessionMAC?
    /// The opened record frames are read from (in `body`, opened in
    /// place), and how far.
    private var plain = UnsafeRawPointer(bitPattern: 0)
    private var plainCount = 0
    private var plainAt = 0

    init(fd: CInt, peer: String, loop: EventLoop, reg: Registration, buffered: Bool = false) {
        self.fd = fd
        self.peer = peer
        self.loop = loop
        self.reg = reg
        self.buffered = buffered
        loans.reserveCapacity(Self.maxLoans)
        loansOut.reserveCapacity(Self.maxLoans)
    }

    deinit {
        prefix.deallocate()
        body.deallocate()
        inbox.deallocate()
        iov.deallocate()
        message.deallocate()
    }

    enum ReadEvent {
        case frame(Frame)
        /// The peer closed cleanly between frames.
        case closed
        case failed(TransferError)
    }

    /// Queues the read of the next frame, unless one is under way.
    func read() {
        guard !reading else { return }
        reading = true
        readNext()
    }

    /// Queues the read of the next frame's prefix (sealed: the next record's
    /// length, or nothing if the opened record holds more frames).
    private func readNext() {
        if cipher != nil, plainAt < plainCount {
            // Already in memory; a nop keeps the completion-driven shape.
            queue(.nop, .readBody)
            return
        }
        if buffered, cipher == nil {
            readAhead()
            return
        }
        let want = cipher != nil ? SessionCipher.headerSize : FramePrefix.size
        queue(.recv(fd: fd, buffer: prefix.baseAddress!, length: want, flags: CInt(MSG_WAITALL)), .readPrefix)
    }

    func queue(_ op: Op, _ tag: OpTag.Op) {
        inflight += 1
        loop.backend.queue(op, reg.userData(OpTag(tag)))
    }

    /// A completion tagged `readPrefix` or `readBody`: the next frame, or
    /// nil while the frame is still being read.
    func onRead(_ c: Completion) -> ReadEvent? {
        inflight -= 1
        let event: ReadEvent?
        if let cipher {
            event = onSealedRead(c, cipher)
        } else if buffered {
            event = onBufferedRead(c)
        } else {
            event = onPlainRead(c)
        }
        if event != nil { reading = false }
        return event
    }

    private func onPlainRead(_ c: Completion) -> ReadEvent? {
        // The body read names the prefix it belongs to; a prefix read, none.
        let awaited = c.tag?.op == .readBody ? pendingPrefix : nil
        pendingPrefix = nil
        let want = awaited.map { Int($0.length) } ?? FramePrefix.size
        if c.result < 0 {
            if c.result == -ECANCELED { return .failed(.disconnected("cancelled", peer: peer)) }
            return .failed(.io(IOError(result: c.result, "receive from", peer)))
        }
        if c.result == 0 && awaited == nil { return .closed }
        if Int(c.result) < want {
            let what = awaited.map { "a \($0.type) frame" } ?? "a frame prefix"
            return .failed(.disconnected("closed in the middle of \(what) (\(c.result) of \(want) bytes)", peer: peer))
        }
        do {
            guard let p = awaited else {
                let p = try checkedPrefix(UnsafeRawBufferPointer(prefix))
                if let limit = bodyLimit, p.length > limit {
                    return .failed(.protocolViolation("a \(p.type) frame of \(p.length) bytes before the code was proved (at most \(limit) then)", peer: peer))
                }
                if p.length == 0 {
                    return .frame(try FrameCodec.decodeBody(p, UnsafeRawBufferPointer(start: body.baseAddress, count: 0)))
                }
                if Int(p.length) > body.count {
                    // Capped by FramePrefix.decode: a peer cannot ask for more.
                    body.deallocate()
                    body = .allocate(byteCount: Int(p.length), alignment: 8)
                }
                pendingPrefix = p
                queue(.recv(fd: fd, buffer: body.baseAddress!, length: Int(p.length), flags: CInt(MSG_WAITALL)), .readBody)
                return nil
            }
            let frame = try decodeBody(p, prefix: UnsafeRawBufferPointer(prefix),
                                       body: UnsafeRawBufferPointer(start: body.baseAddress, count: Int(p.length)))
            if body.count > 1 << 16 {
                // Give back a manifest-sized buffer once the frame is decoded.
                body.deallocate()
                body = .allocate(byteCount: 4096, alignment: 8)
            }
            return .frame(frame)
        } catch let e as TransferError {
            return .failed(e)
        } catch {
            return .failed(.protocolViolation("\(error)", peer: peer))
        }
    }

    /// A prefix, checked against its type's cap and, on a tagged
    /// connection, against what a tagged frame must look like.
    private func checkedPrefix(_ bytes: UnsafeRawBufferPointer) throws -> FramePrefix {
        guard mac != nil else { return try FramePrefix.decode(bytes) }
        let p = try FramePrefix.decode(bytes, extra: UInt32(SessionMAC.tagSize))
        if let why = SessionMAC.problem(with: p) { throw TransferError.protocolViolation(why, peer: peer) }
        return p
    }

    /// A frame's body decoded; on a tagged connection its tag is checked
    /// first and is not part of what is decoded.
    private func decodeBody(_ p: FramePrefix, prefix: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) throws -> Frame {
        guard let mac else { return try FrameCodec.decodeBody(p, body) }
        guard let (plain, plainBody) = mac.untag(p, prefix: prefix, body: body) else {
            throw TransferError.protocolViolation("a \(p.type) frame failed its tag check (altered, replayed, injected, or a different code)", peer: peer)
        }
        return try FrameCodec.decodeBody(plain, plainBody)
    }

    /// The next frame in `bytes`, or how many more bytes it needs.
    private func decode(_ bytes: UnsafeRawBufferPointer) throws -> Decoded {
        guard bytes.count >= FramePrefix.size else { return .needMore(FramePrefix.size - bytes.count) }
        let p = try checkedPrefix(bytes)
        let total = FramePrefix.size + Int(p.length)
        guard bytes.count >= total else { return .needMore(total - bytes.count) }
        let frame = try decodeBody(p, prefix: UnsafeRawBufferPointer(rebasing: bytes[..<FramePrefix.size]),
                                   body: UnsafeRawBufferPointer(rebasing: bytes[FramePrefix.size..<total]))
        return .frame(frame, consumed: total)
    }

    /// Whether `bytes` start with a whole frame (by its announced length;
    /// decoding it checks the rest).
    private static func holdsWholeFrame(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= FramePrefix.size else { return false }
        let length = Int(bytes[4]) << 24 | Int(bytes[5]) << 16 | Int(bytes[6]) << 8 | Int(bytes[7])
        return bytes.count >= FramePrefix.size + length
    }

    /// A record's length, then its body; then frames one by one from the
    /// opened plaintext. A frame may not straddle two records.
    private func onSealedRead(_ c: Completion, _ cipher: SessionCipher) -> ReadEvent? {
        let isPrefix = c.tag?.op == .readPrefix
        if isPrefix || c.userData.kind == .recv {
            if c.result < 0 { return .failed(.io(IOError(result: c.result, "receive from", peer))) }
            if c.result == 0, isPrefix { return .closed }
        }
        if isPrefix {
            guard Int(c.result) == SessionCipher.headerSize else {
                return .failed(.disconnected("closed in the middle of a record header", peer: peer))
            }
            guard let n = SessionCipher.bodyLength(UnsafeRawBufferPointer(prefix)) else {
                return .failed(.protocolViolation("sealed record of an impossible length", peer: peer))
            }
            if n > body.count {
                body.deallocate()
                body = .allocate(byteCount: n, alignment: 16)
            }
            pendingRecord = n
            queue(.recv(fd: fd, buffer: body.baseAddress!, length: n, flags: CInt(MSG_WAITALL)), .readBody)
            return nil
        }
        if c.userData.kind == .recv {
            guard Int(c.result) == pendingRecord else {
                return .failed(.disconnected("closed in the middle of a sealed record", peer: peer))
            }
            guard let opened = cipher.open(inPlace: UnsafeMutableRawBufferPointer(rebasing: body[..<pendingRecord])) else {
                return .failed(.protocolViolation("a sealed record failed authentication (altered, replayed, or a different code)", peer: peer))
            }
            plain = UnsafeRawPointer(body.baseAddress!)
            plainCount = opened
            plainAt = 0
        }
        let rest = UnsafeRawBufferPointer(start: plain! + plainAt, count: plainCount - plainAt)
        do {
            switch try FrameCodec.decode(rest) {
            case .needMore:
                return .failed(.protocolViolation("a frame straddles two sealed records", peer: peer))
            case .frame(let f, let used):
                plainAt += used
                return .frame(f)
            }
        } catch {
            return .failed(.protocolViolation(error.description, peer: peer))
        }
    }

    private var pendingRecord = 0

    /// Bytes read ahead and not yet decoded (buffered mode).
    var hasBufferedInput: Bool { inEnd > inStart }

    /// A frame already in the inbox completes through a nop; otherwise the
    /// inbox is compacted and refilled with whatever the socket holds.
    private func readAhead() {
        if inbox.count == 0 { inbox = .allocate(byteCount: 64 << 10, alignment: 16) }
        if Self.holdsWholeFrame(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(inbox)[inStart..<inEnd])) {
            queue(.nop, .readBody)
            return
        }
        if inStart > 0 {
            let n = inEnd - inStart
            if n > 0 { inbox.baseAddress!.copyMemory(from: inbox.baseAddress! + inStart, byteCount: n) }
            inStart = 0
            inEnd = n
        }
        queue(.recv(fd: fd, buffer: inbox.baseAddress! + inEnd, length: inbox.count - inEnd, flags: 0), .readPrefix)
    }

    private func onBufferedRead(_ c: Completion) -> ReadEvent? {
        if c.userData.kind == .recv {
            if c.result < 0 { return .failed(.io(IOError(result: c.result, "receive from", peer))) }
            if c.result == 0 {
                return inEnd == inStart ? .closed : .failed(.disconnected("closed in the middle of a frame", peer: peer))
            }
            inEnd += Int(c.result)
        }
        do {
            switch try decode(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(inbox)[inStart..<inEnd])) {
            case .frame(let f, let used):
                inStart += used
                return .frame(f)
            case .needMore(let n):
                // A frame bigger than the inbox (capped by its type): grow.
                let need = inEnd - inStart + n
                if need > inbox.count {
                    let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: need, alignment: 16)
                    bigger.baseAddress!.copyMemory(from: inbox.baseAddress! + inStart, byteCount: inEnd - inStart)
                    inbox.deallocate()
                    inbox = bigger
                    inEnd -= inStart
                    inStart = 0
                }
                readAhead()
                return nil
            }
        } catch let e as TransferError {
            return .failed(e)
        } catch {
            return .failed(.protocolViolation("\(error)", peer: peer))
        }
    }

    /// A data frame's payload from the opened record (sealed mode), valid
    /// until the next `readNext`; nil if the record does not hold it all.
    func takePayload(_ length: Int) -> UnsafeRawBufferPointer? {
        guard cipher != nil, plainCount - plainAt >= length else { return nil }
        defer { plainAt += length }
        return UnsafeRawBufferPointer(start: plain! + plainAt, count: length)
    }

    /// Once the code's proofs are exchanged: every frame from here on is
    /// sealed (by `cipher`, with `--encrypt`) or tagged (with `tags`), in
    /// both directions.
    func bind(_ keys: SessionKeys, role: Hello.Role, cipher chosen: Cipher?, tags: SessionMAC.Algorithm) {
        if let chosen {
            cipher = SessionCipher(keys, role: role, cipher: chosen)
        } else {
            mac = SessionMAC(keys, role: role, algorithm: tags)
        }
    }
}
