import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// A chunk of entry `index`: what a data stream carries, and what goes
/// again on another stream when one breaks.
struct LaneChunk: Equatable {
    var index: Int
    var offset: UInt64
    var length: Int
}

/// What a `SendLane` needs from its push.
protocol SendLaneOwner: AnyObject {
    var loop: EventLoop { get }
    /// The file a chunk of entry `index` is read from (opened on first
    /// use), the entry's file id, and what keeps that fd open while the
    /// chunk is in flight; nil when it cannot be opened (the push is then
    /// failing).
    func laneSource(_ index: Int) -> (fd: CInt, fileID: UInt32, keep: AnyObject)?
    func laneReady(_ lane: SendLane)
    func laneChunkSent(_ lane: SendLane, _ chunk: LaneChunk)
    /// The stream broke: `lost` are its chunks to send again.
    func laneDied(_ lane: SendLane, _ why: String, lost: [LaneChunk])
    /// The file shrank under a chunk: the push fails.
    func laneSourceFailed(_ message: String)
    func laneActivity()
}

/// One extra data stream of a push (`ft send -P N`). It connects beside the
/// push's own connection and joins its session with a `lane` hello and the
/// code's proof; then it carries whole chunks, each a header followed by
/// file → pipe → socket splices on the ring, so a slow stream holds up only
/// its own chunk. It remembers what it carried until the push forgets those
/// files (acknowledged), so that a broken stream's chunks can go again.
final class SendLane: LoopHandler {
    enum State: Equatable {
        case connecting
        case handshaking
        case ready
        case dead
    }

    unowned let owner: SendLaneOwner
    let number: Int
    let peer: String
    private(set) var state = State.connecting
    private(set) var socket: CInt = -1
    private var reg: Registration!
    private var channel: FrameChannel!
    private let pipe: Pipe
    private let header = UnsafeMutableRawBufferPointer.allocate(byteCount: DataHeader.wireSize, alignment: 8)
    private let address: UnsafeMutablePointer<sockaddr_storage>
    private let sessionID: [UInt8]
    private let code: [UInt8]?
    private let nonce = AuthCode.randomBytes(32)
    private(set) var inflight = 0

    private(set) var current: LaneChunk?
    /// Holds the file of `current` open until its splices are done.
    private var source: AnyObject?
    private var carried: [LaneChunk] = []
    private var pending = 0
    private var spliced = 0
    private var failedWhy: String?
    /// When the chunk on the wire last moved, to find a stalled stream.
    private(set) var lastProgress = monotonicNanoseconds()

    init(owner: SendLaneOwner, number: Int, address: SocketAddress, sessionID: [UInt8], code: [UInt8]?) throws(IOError) {
        self.owner = owner
        self.number = number
        self.peer = address.description
        self.sessionID = sessionID
        self.code = code
        pipe = try Pipe(size: SendConfig.pipeSize)
        // The push's chunks are cut to this size; a smaller pipe would
        // leave the linked splices waiting on each other.
        guard pipe.capacity >= SendConfig.pipeSize else { throw IOError(.noBufferSpace, "size a pipe for", "data stream \(number)") }
        self.address = .allocate(capacity: 1)
        self.address.pointee = address.storage
        socket = try Socket.makeTCP(family: address.family).release()
        let loop = owner.loop
        reg = loop.register(self)
        loop.backend.adopt(socket: socket)
        self.address.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            loop.backend.queue(.connect(fd: socket, address: sa, length: address.length), reg.userData(Tag.connect.rawValue))
        }
        inflight += 1
    }

    deinit {
        if socket >= 0 { close(socket) }
        header.deallocate()
        address.deallocate()
    }

    /// Ready for a chunk.
    var idle: Bool { state == .ready && current == nil }
    /// The chunk bytes a stream this size holds at once.
    var chunkCapacity: Int { pipe.capacity }

    func send(_ chunk: LaneChunk) {
        precondition(idle && chunk.length <= pipe.capacity)
        guard let (fd, fileID, keep) = owner.laneSource(chunk.index) else { return }
        source = keep
        let loop = owner.loop
        current = chunk
        pending = 3
        spliced = 0
        failedWhy = nil
        lastProgress = monotonicNanoseconds()
        inflight += 3
        DataHeader(fileID: fileID, length: UInt32(chunk.length), offset: chunk.offset).encode(into: header)
        loop.backend.queue(.send(fd: socket, buffer: UnsafeRawPointer(header.baseAddress!), length: DataHeader.wireSize,
                                 flags: CInt(MSG_MORE) | CInt(MSG_NOSIGNAL) | CInt(MSG_WAITALL)),
                           reg.userData(Tag.chunkHeader.rawValue), link: true)
        loop.backend.queue(.splice(input: fd, inputOffset: Int64(chunk.offset), output: pipe.writeEnd,
                                   outputOffset: Op.noOffset, length: chunk.length, flags: 0),
                           reg.userData(Tag.spliceIn.rawValue), link: true)
        loop.backend.queue(.splice(input: pipe.readEnd, inputOffset: Op.noOffset, output: socket,
                                   outputOffset: Op.noOffset, length: chunk.length, flags: 0),
                           reg.userData(Tag.spliceOut.rawValue))
    }

    /// Entry `index` is acknowledged: its chunks need not go again.
    func forget(_ index: Int) {
        carried.removeAll { $0.index == index }
    }

    /// Ends the stream (the push is over, or it stalled).
    func kill(_ why: String?) {
        if let why, state != .dead {
            die(why)
            return
        }
        state = .dead
        if socket >= 0 { _ = shutdown(socket, CInt(SHUT_RDWR)) }
        if inflight == 0 { owner.loop.unregister(reg) }
    }

    // MARK: Completions

    func complete(_ c: Completion, on loop: EventLoop) {
        inflight -= 1
        defer {
            if state == .dead, inflight == 0 {
                source = nil
                loop.unregister(reg)
            }
        }
        guard let tag = Tag(rawValue: c.userData.tag), state != .dead else { return }
        owner.laneActivity()
        switch tag {
        case .connect:
            guard c.result >= 0 else {
                die(IOError(result: c.result, "connect to", peer).description)
                return
            }
            Socket.setInt(socket, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
            state = .handshaking
            channel = FrameChannel(fd: socket, peer: peer)
            channel.enqueue(.hello(Hello(role: .sender, features: [.lane], sessionID: sessionID, nonce: nonce)))
            flush()
            read()
        case .sendControl:
            if let e = channel.onSent(c) { die(e.description) } else { flush() }
        case .readPrefix, .readBody:
            switch channel.onRead(c, loop, reg) {
            case .pending:
                inflight += 1
            case .frame(let f):
                receive(f)
            case .closed:
                die("the receiver closed it")
            case .failed(let e):
                die(e.description)
            }
        case .chunkHeader, .spliceIn, .spliceOut:
            chunkCompleted(tag, c.result)
        default:
            break
        }
    }

    func tick(now: UInt64, on loop: EventLoop) {}

    private func receive(_ f: Frame) {
        switch (state, f) {
        case (.handshaking, .hello(let h)) where h.role == .receiver:
            if h.features.contains(.auth) {
                guard let code else {
                    die("the receiver wants the code and this push has none")
                    return
                }
                channel.enqueue(.auth(AuthCode.proof(code: code, role: .sender, session: sessionID,
                                                     senderNonce: nonce, receiverNonce: h.nonce)))
                flush()
            }
            // The receiver answers a lane only with an error, or not at all.
            state = .ready
            read()
            owner.laneReady(self)
        case (_, .error(let e)):
            die("the receiver refused it: \(e.message)")
        default:
            die("the receiver sent an unexpected \(f.type) frame")
        }
    }

    private func chunkCompleted(_ tag: Tag, _ result: Int32) {
        guard let chunk = current else { return }
        pending -= 1
        switch tag {
        case .chunkHeader where result >= 0 && Int(result) < DataHeader.wireSize:
            failedWhy = failedWhy ?? "the header went out short"
        case .spliceIn where result >= 0 && Int(result) < chunk.length:
            failedWhy = failedWhy ?? "file shrank"
            owner.laneSourceFailed("a file shrank while being sent (read \(chunk.offset + UInt64(result)) bytes at most)")
        case .spliceOut where result > 0:
            spliced += Int(result)
            lastProgress = monotonicNanoseconds()
            if spliced < chunk.length, failedWhy == nil {
                // A short write to the socket: the rest is still in the pipe.
                pending += 1
                inflight += 1
                owner.loop.backend.queue(.splice(input: pipe.readEnd, inputOffset: Op.noOffset, output: socket,
                                                 outputOffset: Op.noOffset, length: chunk.length - spliced, flags: 0),
                                         reg.userData(Tag.spliceOut.rawValue))
            }
        default:
            break
        }
        if result < 0, result != -ECANCELED, failedWhy == nil {
            failedWhy = IOError(result: result, tag == .spliceIn ? "read for" : "send to", peer).description
        } else if result == 0, tag == .spliceOut, failedWhy == nil {
            failedWhy = "the socket took no more bytes"
        }
        guard pending == 0 else { return }
        if let why = failedWhy {
            die(why)
            return
        }
        current = nil
        source = nil
        carried.append(chunk)
        owner.laneChunkSent(self, chunk)
    }

    private func die(_ why: String) {
        guard state != .dead else { return }
        state = .dead
        if socket >= 0 { _ = shutdown(socket, CInt(SHUT_RDWR)) }
        // Ops still in flight on the pipe end with the socket; the pipe is
        // never used again.
        var lost = carried
        if let c = current { lost.append(c) }
        carried = []
        current = nil
        if inflight == 0 { source = nil }
        owner.laneDied(self, why, lost: lost)
    }

    private func read() {
        guard !channel.reading else { return }
        inflight += 1
        channel.readNext(owner.loop, reg)
    }

    private func flush() {
        if channel.flush(owner.loop, reg) { inflight += 1 }
    }
}
