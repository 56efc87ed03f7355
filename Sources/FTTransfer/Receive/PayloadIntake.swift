import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// A payload being moved from a socket into entry `index`'s sink.
struct Payload {
    var id: UInt32
    /// Held here too: a data stream's writes keep the fd open whatever its
    /// push does meanwhile.
    var sink: FileSink
    var start: UInt64
    var length: UInt64
}

/// Moves the payload that follows a `data` header from one connection's
/// socket into a file: through splice pipes (`SplicePipes`, with twins when
/// the push is relayed to a next host), through a buffer (hashed there while
/// hot), or out of an opened sealed record. A push's own connection and each
/// of its data streams has one.
final class PayloadIntake {
    enum Event {
        case none
        /// `bytes` more of the payload are stored (for the meter).
        case stored(Int)
        /// The payload is all in (or all dropped); the last `stored` bytes
        /// are counted here.
        case finished(Payload?, stored: Int)
        /// The connection broke mid-payload: the sender's side.
        /// `tellPeer`: a local error the peer may still hear about.
        case socketLost(TransferError, tellPeer: Bool)
        /// Storing failed on our side; the push fails.
        case failed(TransferError)
    }

    enum Path {
        case splice
        case copy
        case sealed
    }

    private let socket: CInt
    private let peer: String
    private unowned let loop: EventLoop
    private let reg: Registration
    private let channel: FrameChannel
    private let path: Path
    /// The next host of a chain push, if its stream is relayed.
    private let relay: RelayLink?
    private var ownInflight = 0
    private(set) var current: Payload?
    /// Payload bytes still to come from the socket, and where they go.
    private var offset: UInt64 = 0
    private var remaining: UInt64 = 0
    private var discarding: UInt64 = 0

    // splice
    private var pipes: [Pipe] = []
    private var twins: [Pipe] = []
    private var splice: SplicePipes?
    // copy and sealed: the bytes in the buffer and how many are written.
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var piece = 0
    private var written = 0
    private var pieceSource: UnsafeRawPointer?
    private var copyInFlight = 0

    static let pipeCount = 3
    /// Pipe capacity for splicing (F_SETPIPE_SZ); 1 MiB measured best here.
    static let pipeSize = 1 << 20
    static let bufferSize = 1 << 20

    init(socket: CInt, peer: String, channel: FrameChannel, path: Path, relay: RelayLink?, loop: EventLoop, reg: Registration) {
        self.socket = socket
        self.peer = peer
        self.channel = channel
        self.path = path
        self.relay = relay
        self.loop = loop
        self.reg = reg
    }

    deinit { buffer.deallocate() }

    var inflight: Int { ownInflight }
    var busy: Bool { current != nil || discarding > 0 }

    private func queue(_ op: Op, _ tag: OpTag, link: Bool = false) {
        ownInflight += 1
        loop.backend.queue(op, reg.userData(tag), link: link)
    }

    private func ensureBuffer() -> UnsafeMutableRawBufferPointer {
        if buffer.count == 0 { buffer = .allocate(byteCount: Self.bufferSize, alignment: 4096) }
        return buffer
    }

    // MARK: Starting

    /// `p.length` payload bytes follow on the socket; store them.
    func start(_ p: Payload) -> Event {
        precondition(!busy)
        current = p
        offset = p.start
        remaining = p.length
        if p.length == 0 { return finish() }
        switch path {
        case .sealed: return storeSealed()
        case .copy: return pumpCopy()
        case .splice: return startSplice()
        }
    }

    /// A chunk sent again whose bytes are all here: read and drop them.
    func discard(_ length: UInt32) -> Event {
        precondition(!busy)
        discarding = UInt64(length)
        return pumpDiscard()
    }

    private func finish(stored: Int = 0) -> Event {
        let p = current
        current = nil
        return .finished(p, stored: stored)
    }

    // MARK: Splice

    private func startSplice() -> Event {
        var s: SplicePipes
        if let existing = splice {
            s = existing
        } else {
            do throws(IOError) {
                for _ in 0..<Self.pipeCount { pipes.append(try Pipe(size: Self.pipeSize)) }
                if let relay, !relay.final {
                    for _ in 0..<Self.pipeCount { twins.append(try Pipe(size: Self.pipeSize)) }
                }
            } catch {
                return .failed(.io(error))
            }
            let capacity = (pipes + twins).map(\.capacity).min() ?? Self.pipeSize
            s = SplicePipes(pipes: pipes.count, capacity: capacity, relaying: !twins.isEmpty)
        }
        s.start(offset: offset, length: remaining)
        defer { splice = s }
        return pumpSplice(&s)
    }

    /// The next host's socket may take payload again (or is gone).
    func relayChanged() -> Event {
        // Called back from within our own completion (a relay failure we
        // reported): that completion pumps the pipes itself.
        guard !inCompletion, let relay, var s = splice else { return .none }
        defer { splice = s }
        if relay.final, s.relaying { s.dropRelay() }
        guard current != nil, !s.finished else { return .none }
        return pumpSplice(&s)
    }

    /// Queues what the pipes can do now. `settle`: end the payload if they
    /// are done (false while the caller still has bytes to record).
    private func pumpSplice(_ s: inout SplicePipes, settle: Bool = true) -> Event {
        guard let p = current else { return .none }
        for action in s.next(canSend: relay?.idle ?? false) {
            switch action {
            case .tee(let i, let length):
                queue(.tee(input: pipes[i].readEnd, output: twins[i].writeEnd, length: length, flags: 0), OpTag(.pipeTee, i))
            case .send(let i, let length):
                guard let relay else { continue }
                queue(.splice(input: twins[i].readEnd, inputOffset: Op.noOffset, output: relay.socket,
                              outputOffset: Op.noOffset, length: length, flags: 0), OpTag(.pipeSend, i))
            case .fill(let i, let length):
                queue(.splice(input: socket, inputOffset: Op.noOffset, output: pipes[i].writeEnd,
                              outputOffset: Op.noOffset, length: length, flags: 0), OpTag(.pipeFill, i))
            case .drain(let i, let length, let at):
                queue(.splice(input: pipes[i].readEnd, inputOffset: Op.noOffset, output: p.sink.fd,
                              outputOffset: p.sink.isStdout ? Op.noOffset : Int64(at), length: length, flags: 0),
                      OpTag(.pipeDrain, i))
            }
        }
        if settle, s.finished { return finish() }
        return .none
    }

    private func spliceCompleted(_ tag: OpTag, _ result: Int32) -> Event {
        guard let p = current, var s = splice else { return .none }
        defer { splice = s }
        switch tag.op {
        case .pipeTee, .pipeSend:
            return relayCompleted(tag, result, &s)
        case .pipeFill:
            guard result > 0 else {
                return result == 0
                    ? .socketLost(.disconnected("closed in the middle of a chunk of '\(p.sink.display)'", peer: peer), tellPeer: false)
                    : .socketLost(.io(IOError(result: result, "splice from", peer)), tellPeer: true)
            }
            s.filled(pipe: tag.index, bytes: Int(result))
            return pumpSplice(&s)
        default:
            guard result > 0 else {
                let e = result < 0 ? IOError(result: result, "write", p.sink.display) : IOError(.noSpace, "write (no progress) to", p.sink.display)
                return .failed(.io(e))
            }
            // Queue the next splices before hashing, so the kernel keeps
            // moving bytes while this thread hashes.
            let stored = s.drained(pipe: tag.index, bytes: Int(result))
            ReceiveFault.corrupt(fd: p.sink.fd, stored: stored)
            _ = pumpSplice(&s, settle: false)
            do {
                try p.sink.didStore(stored)
            } catch {
                return .failed(.io(error))
            }
            // Only now: ending the payload may finish the file, which needs
            // these bytes hashed.
            if s.finished { return finish(stored: Int(result)) }
            return .stored(Int(result))
        }
    }

    /// A tee into, or a send out of, a pipe's twin completed.
    private func relayCompleted(_ tag: OpTag, _ result: Int32, _ s: inout SplicePipes) -> Event {
        guard let relay, s.relaying, !relay.final else {
            s.abandoned(pipe: tag.index)
            return pumpSplice(&s)
        }
        var lost: String?
        if tag.op == .pipeTee {
            if result < 0 {
                lost = IOError(result: result, "tee into the relay pipe for", relay.host).description
            } else if !s.teed(pipe: tag.index, bytes: Int(result)) {
                lost = "tee copied \(result) bytes, short of the pipe's"
            }
        } else if result <= 0 {
            lost = result < 0 ? IOError(result: result, "send to", relay.host).description : "send to \(relay.host) made no progress"
        } else {
            s.sent(pipe: tag.index, bytes: Int(result))
        }
        if let lost {
            s.abandoned(pipe: tag.index)
            s.dropRelay()
            relay.broke(lost)
        }
        return pumpSplice(&s)
    }

    // MARK: Copy

    /// recv into our buffer (hashed there while hot), then write to the file.
    private func pumpCopy() -> Event {
        guard let p = current, copyInFlight == 0 else { return .none }
        guard remaining > 0 else { return finish() }
        let buf = ensureBuffer()
        piece = Int(min(remaining, UInt64(buf.count)))
        written = 0
        pieceSource = UnsafeRawPointer(buf.baseAddress!)
        queue(.recv(fd: socket, buffer: buf.baseAddress!, length: piece, flags: CInt(MSG_WAITALL)), OpTag(.payloadRecv), link: true)
        queue(.write(fd: p.sink.fd, buffer: buf.baseAddress!, length: piece, offset: p.sink.isStdout ? Op.noOffset : Int64(offset)),
              OpTag(.payloadWrite))
        copyInFlight = 2
        return .none
    }

    private func copyCompleted(_ op: OpTag.Op, _ result: Int32) -> Event {
        guard let p = current else { return .none }
        copyInFlight -= 1
        if op == .payloadRecv {
            if Int(result) < piece {
                return result < 0
                    ? .socketLost(.io(IOError(result: result, "receive from", peer)), tellPeer: true)
                    : .socketLost(.disconnected("closed in the middle of a chunk of '\(p.sink.display)'", peer: peer), tellPeer: false)
            }
            // The write of these bytes is running; both only read the buffer.
            ReceiveFault.corrupt(UnsafeMutableRawBufferPointer(rebasing: buffer[..<piece]), at: offset,
                                 file: p.sink.isStdout ? nil : p.sink.fd)
            p.sink.hash(UnsafeRawBufferPointer(start: buffer.baseAddress, count: piece), at: offset)
            return copyInFlight == 0 ? pumpCopy() : .none
        }
        if result == -ECANCELED { return copyInFlight == 0 ? pumpCopy() : .none }
        if result <= 0 {
            let e = result < 0 ? IOError(result: result, "write", p.sink.display) : IOError(.noSpace, "write (no progress) to", p.sink.display)
            return .failed(.io(e))
        }
        written += Int(result)
        if written < piece {
            // Pipes (stdout) take what fits; queue the rest of the buffer.
            let rest = piece - written
            copyInFlight += 1
            queue(.write(fd: p.sink.fd, buffer: pieceSource! + written, length: rest,
                         offset: p.sink.isStdout ? Op.noOffset : Int64(offset) + Int64(written)), OpTag(.payloadWrite))
            return .none
        }
        let stored = offset..<offset + UInt64(piece)
        offset += UInt64(piece)
        remaining -= UInt64(piece)
        do {
            try p.sink.didStore(stored)
        } catch {
            return .failed(.io(error))
        }
        let n = piece
        if remaining == 0 { return finish(stored: n) }
        _ = pumpCopy()
        return .stored(n)
    }

    /// A sealed data frame's payload is in the opened record: hash it there
    /// and write it; the record stays until the next read.
    private func storeSealed() -> Event {
        guard let p = current, let bytes = channel.takePayload(Int(remaining)) else {
            return .failed(.protocolViolation("a data frame's payload is not in its sealed record", peer: peer))
        }
        ReceiveFault.corrupt(UnsafeMutableRawBufferPointer(mutating: bytes), at: offset)
        p.sink.hash(bytes, at: offset)
        piece = bytes.count
        written = 0
        pieceSource = bytes.baseAddress
        copyInFlight = 1
        queue(.write(fd: p.sink.fd, buffer: bytes.baseAddress!, length: bytes.count,
                     offset: p.sink.isStdout ? Op.noOffset : Int64(offset)), OpTag(.payloadWrite))
        return .none
    }

    // MARK: Discard

    private func pumpDiscard() -> Event {
        guard discarding > 0 else { return .finished(nil, stored: 0) }
        let buf = ensureBuffer()
        let n = Int(min(discarding, UInt64(buf.count)))
        queue(.recv(fd: socket, buffer: buf.baseAddress!, length: n, flags: CInt(MSG_WAITALL)), OpTag(.discardRecv))
        return .none
    }

    private func discardCompleted(_ result: Int32) -> Event {
        guard result > 0 else {
            discarding = 0
            return result < 0
                ? .socketLost(.io(IOError(result: result, "receive from", peer)), tellPeer: false)
                : .socketLost(.disconnected("closed in the middle of a chunk", peer: peer), tellPeer: false)
        }
        discarding -= min(discarding, UInt64(result))
        return pumpDiscard()
    }

    // MARK: Completions

    /// A completion of one of our operations. After a failure event the
    /// intake only winds down: later completions report nothing.
    func complete(_ c: Completion) -> Event {
        ownInflight -= 1
        guard let tag = c.tag, !abandoned else { return .none }
        inCompletion = true
        defer { inCompletion = false }
        let event: Event
        switch tag.op {
        case .pipeFill, .pipeDrain, .pipeTee, .pipeSend: event = spliceCompleted(tag, c.result)
        case .payloadRecv, .payloadWrite: event = copyCompleted(tag.op, c.result)
        case .discardRecv: event = discardCompleted(c.result)
        default: event = .none
        }
        switch event {
        case .socketLost, .failed: abandon()
        default: break
        }
        return event
    }

    /// The connection is ending: operations in flight only wind down.
    func abandon() {
        abandoned = true
        current = nil
        discarding = 0
    }

    private var abandoned = false
    private var inCompletion = false
}
