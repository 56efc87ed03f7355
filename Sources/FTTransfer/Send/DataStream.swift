import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// What a `DataStream` needs from its push.
protocol DataStreamOwner: AnyObject {
    var loop: EventLoop { get }
    /// The file a chunk of entry `id` is read from (opened on first use);
    /// nil when it cannot be opened (the file is then left out).
    func streamSource(_ id: UInt32) -> SourceFile?
    func streamReady(_ stream: DataStream)
    func streamSent(_ stream: DataStream, _ chunk: FileChunk)
    /// The stream broke: `lost` are its chunks to send again.
    func streamDied(_ stream: DataStream, _ why: String, lost: [FileChunk])
    /// The file shrank under a chunk: the push fails.
    func streamSourceFailed(_ message: String)
    func streamActivity()
}

/// One extra data stream of a push (`ft send -P N`). It connects beside the
/// push's own connection and joins its session with a data-stream hello
/// and the code's proof; then it carries whole chunks, each a header
/// followed by file → pipe → socket splices on the ring (`SpliceChunk`), so
/// a slow stream holds up only its own chunk. It remembers what it carried
/// until the push forgets those files (acknowledged), so that a broken
/// stream's chunks can go again.
final class DataStream: LoopHandler {
    enum State: Equatable {
        case connecting
        case handshaking
        case ready
        case dead
    }

    unowned let owner: DataStreamOwner
    let number: Int
    let peer: String
    private(set) var state = State.connecting
    private let socket: OwnedSocket
    private var reg: Registration!
    private var channel: FrameChannel!
    private var handshake: SenderHandshake
    private let pipe: Pipe
    private let header = UnsafeMutableRawBufferPointer.allocate(byteCount: DataHeader.wireSize, alignment: 8)
    private let address: UnsafeMutablePointer<sockaddr_storage>
    private var ownInflight = 0

    /// The chunk on the wire, its file (held open until its splices end),
    /// and its progress.
    private var current: (chunk: FileChunk, file: SourceFile, splice: SpliceChunk)?
    private var carried: [FileChunk] = []
    /// When the chunk on the wire last moved, to find a stalled stream.
    private(set) var lastProgress = monotonicNanoseconds()

    init(owner: DataStreamOwner, number: Int, address: SocketAddress, sessionID: [UInt8], code: [UInt8]?) throws(IOError) {
        self.owner = owner
        self.number = number
        self.peer = address.description
        handshake = SenderHandshake(purpose: .dataStream, features: [.dataStream], code: code, sessionID: sessionID,
                                    nonce: AuthCode.randomBytes(32))
        pipe = try Pipe(size: DataStreamRules.maxChunk)
        // The push's chunks are cut to this size; a smaller pipe would
        // leave the linked splices waiting on each other.
        guard pipe.capacity >= DataStreamRules.maxChunk else { throw IOError(.noBufferSpace, "size a pipe for", "data stream \(number)") }
        self.address = .allocate(capacity: 1)
        self.address.pointee = address.storage
        socket = OwnedSocket(try Socket.makeTCP(family: address.family).release())
        let loop = owner.loop
        reg = loop.register(self)
        loop.backend.adopt(socket: socket.fd)
        self.address.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            loop.backend.queue(.connect(fd: socket.fd, address: sa, length: address.length), reg.userData(OpTag(.connect)))
        }
        ownInflight += 1
    }

    deinit {
        header.deallocate()
        address.deallocate()
    }

    var inflight: Int { ownInflight + (channel?.inflight ?? 0) + (current?.splice.opsInFlight ?? 0) }
    /// Ready for a chunk.
    var idle: Bool { state == .ready && current == nil }
    /// Carrying a chunk.
    var busy: Bool { current != nil }

    func send(_ chunk: FileChunk) {
        precondition(idle && chunk.length <= pipe.capacity)
        guard let file = owner.streamSource(chunk.id) else { return }
        lastProgress = monotonicNanoseconds()
        DataHeader(fileID: chunk.id, length: UInt32(chunk.length), offset: chunk.offset).encode(into: header)
        let splice = SpliceChunk.start(header: UnsafeRawPointer(header.baseAddress!), file: file.fd, offset: chunk.offset,
                                       length: chunk.length, pipe: pipe, socket: socket.fd, loop: owner.loop, reg: reg)
        current = (chunk, file, splice)
    }

    /// These entries are acknowledged: their chunks need not go again.
    func forget(_ ids: Set<UInt32>) {
        carried.removeAll { ids.contains($0.id) }
    }

    /// Ends the stream: the push is over (`why` nil), or it stalled.
    func kill(_ why: String?) {
        if let why, state != .dead {
            die(why)
            return
        }
        state = .dead
        socket.shutdown()
        unregisterIfIdle()
    }

    private func unregisterIfIdle() {
        guard state == .dead, inflight == 0, let r = reg else { return }
        reg = nil
        owner.loop.unregister(r)
    }

    // MARK: Completions

    func complete(_ c: Completion, on loop: EventLoop) {
        defer { unregisterIfIdle() }
        guard let tag = c.tag else { return }
        switch tag.op {
        case .readPrefix, .readBody:
            guard let event = channel.onRead(c), state != .dead else { return }
            owner.streamActivity()
            switch event {
            case .frame(let f): receive(f)
            case .closed: die("the receiver closed it")
            case .failed(let e): die(e.description)
            }
        case .sendControl:
            let error = channel.onSent(c)
            guard state != .dead else { return }
            if let error { die(error.description) } else { channel.flush() }
        case .connect:
            ownInflight -= 1
            guard state != .dead else { return }
            owner.streamActivity()
            guard c.result >= 0 else {
                die(IOError(result: c.result, "connect to", peer).description)
                return
            }
            Socket.setInt(socket.fd, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
            state = .handshaking
            channel = FrameChannel(fd: socket.fd, peer: peer, loop: loop, reg: reg)
            // Nothing is written before the receiver's banner.
            channel.read()
        case .chunkHeader, .spliceIn, .spliceOut:
            chunkCompleted(tag.op, c.result)
        default:
            break
        }
    }

    private func receive(_ f: Frame) {
        guard state == .handshaking else {
            // After its hello the receiver answers a stream only with an
            // error, or not at all.
            if case .error(let e) = f { die("the receiver refused it: \(e.message)") } else {
                die("the receiver sent an unexpected \(f.type) frame")
            }
            return
        }
        let step = handshake.receive(f)
        for frame in step.send { channel.enqueue(frame) }
        channel.flush()
        switch step.outcome {
        case .waiting:
            channel.read()
        case .established:
            state = .ready
            channel.read()
            owner.streamReady(self)
        case .failed(let why):
            switch why {
            case .needCode: die("the receiver wants the code and this push has none")
            case .refused(let e): die("the receiver refused it: \(e.message)")
            case .violation(let s): die(s)
            case .cipher(let m): die(m.description)  // a data stream never encrypts
            case .receiverUnproven, .receiverTakesAnyone: die("the receiver did not take it as a data stream")
            }
        }
    }

    private func chunkCompleted(_ op: OpTag.Op, _ result: Int32) {
        guard var cur = current else { return }
        let outcome = cur.splice.complete(op, result, pipe: pipe, socket: socket.fd, loop: owner.loop, reg: reg)
        current = cur
        let chunk = cur.chunk
        if op == .spliceOut, result > 0 { lastProgress = monotonicNanoseconds() }
        if state == .dead {
            if outcome != .inFlight { current = nil }
            return
        }
        owner.streamActivity()
        switch outcome {
        case .inFlight:
            return
        case .sent:
            current = nil
            carried.append(chunk)
            owner.streamSent(self, chunk)
        case .failed(let why):
            current = nil
            switch why {
            case .shrank(let read):
                owner.streamSourceFailed("a file shrank while being sent (read \(chunk.offset + UInt64(read)) bytes at most)")
                die("file shrank")
            case .shortHeader: die("the header went out short")
            case .stalled: die("the socket took no more bytes")
            case .error(let op, let result):
                die(IOError(result: result, op == .spliceIn ? "read for" : "send to", peer).description)
            }
        }
    }

    private func die(_ why: String) {
        guard state != .dead else { return }
        state = .dead
        socket.shutdown()
        // Ops still in flight on the pipe end with the socket; the pipe is
        // never used again.
        var lost = carried
        if let c = current { lost.append(c.chunk) }
        carried = []
        owner.streamDied(self, why, lost: lost)
    }
}
