import FTEngine
import FTWire
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `ft send`: one push to one receiver, on its own ring. A scanner thread
/// walks the sources into batches while earlier batches' data flows. The
/// handshake (`SenderHandshake`), the receiver's answers (`SenderMachine`)
/// and the order of writes (`WriteScheduler`) are pure; this driver carries
/// out what they decide. Writes on the push's connection are serialised,
/// so frames never interleave.
package final class Sender: LoopHandler {
    package let config: SendConfig
    package let logger: Logger
    let roots: SourceRoots
    let loop: EventLoop
    let offload: Offload
    var reg: Registration!
    var events: ProgressHandler = { _ in }

    let code: [UInt8]?
    let sessionID = AuthCode.randomBytes(16)
    /// The push's name in events and logs, the same on both sides.
    lazy var sessionLabel = PushLabel.of(sessionID)
    var addresses: [SocketAddress] = []
    var addressIndex = 0
    private let addressStorage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    var peer: String
    let clock: SenderClock
    var connectDeadline: UInt64 = .max
    var lastActivity = monotonicNanoseconds()
    let started = monotonicNanoseconds()
    var ownInflight = 0

    /// The connection, once connect succeeded.
    var connection: Connection?
    /// The socket being connected.
    private var pendingSocket: OwnedSocket?
    var handshake: SenderHandshake
    var established = false
    var machine = SenderMachine()
    var receiverFeatures: Features = []
    var scheduler: WriteScheduler
    var meter: ProgressMeter

    /// The walk, and what it handed out so far.
    var scanner: TreeScanner?
    var scanTotals: Totals?
    /// Entries of batches not yet acknowledged, by id.
    var items = ItemWindow()
    /// Answers whose decisions are being made (hashing on the offload
    /// thread); plans go out in batch order.
    var deciding: [UInt32] = []
    var decided: [UInt32: [BatchPlan.Item]] = [:]
    /// Entries the receiver said it has, identical, until their batch is planned.
    var identicalIDs = Set<UInt32>()
    /// `--dry-run`: what would travel.
    var dryRunCounts = (files: UInt64(0), bytes: UInt64(0), patched: UInt64(0), identical: UInt64(0))
    var batchesPlanned: UInt32 = 0
    var lastBatch: UInt32 = 0

    /// What this side knows of each file's content: digests sent, digests
    /// both sides agreed on, bytes the receiver already held.
    var sentDigests: [UInt32: Digest128] = [:]
    var agreed: [(path: String, digest: Digest128)] = []
    var verifiedFiles = 0
    var skipped: UInt64 = 0
    var tally = ProgressEvent.Tally()
    var dataFiles = 0
    var directories = 0
    /// Hashers that already read a resumed prefix, by file id.
    var resumeHashers: [UInt32: StreamHasher] = [:]
    /// Payload bytes each file's plan sends (what is not sent counts as sent
    /// for the hash-ahead window).
    var plannedBytes: [UInt32: UInt64] = [:]
    /// Patched files: the chunk size the receiver hashed its copy in.
    var patchChunks: [UInt32: UInt32] = [:]
    /// Files that could not be read when their turn came: left out.
    var unreadable = Set<UInt32>()
    var relayed: [HopReport.Outcome] = []

    var hashAhead: HashAhead?
    /// Files the helper hashes (their trailer waits for its digest); the
    /// others are hashed in the buffer they are sent from.
    var hashedAhead = Set<UInt32>()
    /// Digests the helper finished, until their trailer is written.
    var readyDigests: [UInt32: Result<Digest128, IOError>] = [:]
    /// The trailer waiting for its digest.
    var awaitingDigest: UInt32?

    /// The file the push's own connection is reading.
    var source: SourceFile?
    var stdin: StdinPump?
    var stdinID: UInt32 = 0
    /// stdin bytes the meter has counted.
    var stdinCounted: UInt64 = 0
    /// stdin's final size and digest, for its trailer.
    var stdinResult: (size: UInt64, digest: Digest128?)?

    /// `-P N`: the data streams and the files they read (open until
    /// acknowledged).
    var streams: [DataStream] = []
    var streamSources: [UInt32: SourceFile] = [:]
    /// Reads small files' bytes for their frames (made at the first).
    var smallReads: SmallReads?
    /// Small files are opened from their parent's descriptor.
    let smallParent = ParentDirectory()

    var failure: TransferError?
    /// A send failed; the receiver's reason may still arrive before this.
    var writeError: (TransferError, deadline: UInt64)?
    var summary: ProgressEvent.Summary?
    var done = false

    /// Batches announced and unacknowledged at once: what bounds memory.
    static let window = 8

    /// The socket, its frames, and its data path.
    final class Connection {
        let socket: OwnedSocket
        let channel: FrameChannel
        let writer: ChunkWriter
        init(socket: OwnedSocket, channel: FrameChannel, writer: ChunkWriter) {
            self.socket = socket
            self.channel = channel
            self.writer = writer
        }
        var inflight: Int { channel.inflight + writer.inflight }
    }

    package init(config: SendConfig, logger: Logger) throws(TransferError) {
        var config = config
        config.path = config.path.resolved(verify: config.verify, streams: config.streams)
        self.config = config
        self.logger = logger
        roots = try SourceRoots(config.paths, stdinName: config.stdinName)
        if let text = config.code {
            guard let c = AuthCode.normalize(text) else { throw .source("'\(text)' is not a code like k7mq-2fxp-93rd") }
            code = c
        } else {
            code = nil
        }
        var features: Features = config.verify ? [.xxh3, .poly1305Tags] : [.poly1305Tags]
        if config.encrypt {
            features.insert(.encrypt)
            for c in config.ciphers { features.insert(c.feature) }
        }
        if config.streams > 1 { features.insert(.dataStreams) }
        handshake = SenderHandshake(purpose: .push, features: features, code: code, sessionID: sessionID,
                                    nonce: AuthCode.randomBytes(32))
        clock = SenderClock(connectTimeoutSeconds: config.connectTimeoutSeconds, idleTimeoutSeconds: config.idleTimeoutSeconds)
        scheduler = WriteScheduler(rateLimit: config.rateLimit)
        peer = config.endpoint.description
        meter = ProgressMeter(session: PushLabel.of(sessionID), totalBytes: nil)
        do {
            let backend = try Engine.makeBackend(config.engine, logger: logger)
            loop = try EventLoop(backend: backend, logger: logger)
            offload = try Offload(loop: loop)
        } catch {
            throw .io(error)
        }
    }

    deinit {
        addressStorage.deallocate()
    }

    package var backend: BackendKind { loop.backend.kind }

    /// Operations of this push still in flight, on every connection.
    var inflight: Int {
        ownInflight + (connection?.inflight ?? 0) + (stdin?.inflight ?? 0) + offload.pending + (smallReads?.inflight ?? 0)
            + streams.reduce(0) { $0 + $1.inflight }
    }

    /// Runs the push to completion.
    package func run(events: @escaping ProgressHandler) throws(TransferError) -> ProgressEvent.Summary {
        self.events = events
        reg = loop.register(self)
        offload.arm()
        do throws(TransferError) {
            if let why = DataStreamRules.refusal(streams: config.streams, path: config.path, encrypt: config.encrypt,
                                                 chain: config.relay != nil) {
                throw .source(why)
            }
            do {
                addresses = try config.endpoint.resolve()
            } catch {
                throw .io(error)
            }
            guard !addresses.isEmpty else { throw .io(IOError(.noSuchAddressOrDevice, "resolve", config.endpoint.description)) }
        } catch {
            events(.failed(.init(session: sessionLabel, peer: peer, error: FTError(error))))
            throw error
        }
        connectNext()
        do {
            try loop.run { done && inflight == 0 }
        } catch {
            failure = failure ?? .io(error)
        }
        if let failure {
            events(.failed(.init(session: sessionLabel, peer: peer, error: FTError(failure))))
            throw failure
        }
        return summary!
    }

    // MARK: Connecting

    private func connectNext() {
        let address = addresses[addressIndex]
        peer = address.description
        let fd: CInt
        do {
            fd = try Socket.makeTCP(family: address.family).release()
        } catch {
            finish(.io(error))
            return
        }
        pendingSocket = OwnedSocket(fd)
        addressStorage.pointee = address.storage
        loop.backend.adopt(socket: fd)
        connectDeadline = monotonicNanoseconds() + UInt64(config.connectTimeoutSeconds * 1e9)
        addressStorage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            loop.backend.queue(.connect(fd: fd, address: sa, length: address.length), reg.userData(OpTag(.connect)))
        }
        ownInflight += 1
    }

    private func connectCompleted(_ result: Int32) {
        guard let socket = pendingSocket else { return }
        pendingSocket = nil
        if result < 0 {
            var e = IOError(result: result, "connect to", peer)
            if result == -ECANCELED { e = IOError(.timedOut, "connect to", peer) }
            if e.errno == .connectionRefused { e.target = peer + " (is `ft recv` running there, on that port?)" }
            addressIndex += 1
            if addressIndex < addresses.count, !done {
                connectNext()
            } else {
                finish(.io(e))
            }
            return
        }
        guard !done else { return }
        Socket.setInt(socket.fd, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
        let channel = FrameChannel(fd: socket.fd, peer: peer, loop: loop, reg: reg, buffered: true)
        let writer: ChunkWriter
        do {
            writer = try ChunkWriter(path: config.path, encrypt: config.encrypt, socket: socket.fd, channel: channel, peer: peer,
                                     idleTimeoutSeconds: config.idleTimeoutSeconds, loop: loop, reg: reg)
        } catch {
            finish(.io(error))
            return
        }
        connection = Connection(socket: socket, channel: channel, writer: writer)
        // Nothing is written before the receiver's banner.
        channel.read()
    }

    /// Payload bytes per chunk for this push's data paths.
    var chunkSize: Int {
        // A data stream's chunk fits its pipe: file → pipe → socket, linked.
        if config.streams > 1 { return min(Int(config.chunkSize), DataStreamRules.maxChunk) }
        return connection?.writer.chunkLimit(Int(config.chunkSize)) ?? Int(config.chunkSize)
    }

    // MARK: Completions

    package func complete(_ c: Completion, on loop: EventLoop) {
        lastActivity = monotonicNanoseconds()
        guard let tag = c.tag else { return }
        switch tag.op {
        case .connect:
            ownInflight -= 1
            connectCompleted(c.result)
        case .shutdown:
            ownInflight -= 1
        case .pace:
            ownInflight -= 1
            scheduler.paceTimerFired()
            pump()
        case .readPrefix, .readBody:
            guard let conn = connection, let event = conn.channel.onRead(c), failure == nil, !done else { return }
            switch event {
            case .frame(let f): received(f)
            case .closed:
                if let (e, _) = writeError {
                    finish(e)
                } else if handshake.awaitingBanner {
                    finish(.disconnected("it closed the connection without opening as an ft receiver: \(SenderHandshake.notOpened)", peer: peer))
                } else {
                    finish(.disconnected("the receiver closed the connection while \(phaseText)", peer: peer))
                }
            case .failed(let e):
                if case .protocolViolation = e, handshake.awaitingHello {
                    // Bytes that are no ft frame before any hello: some
                    // other service listens there (a chat room, a web server).
                    finish(.source("\(peer) is not an ft receiver: it answered with something other than ft's hello; check the host and port (ft recv listens on \(Endpoint.ftPort) by default)"))
                    return
                }
                finish(writeError?.0 ?? e)
            }
        case .sendControl:
            guard let conn = connection else { return }
            if let e = conn.channel.onSent(c) {
                writeFailed(e)
            } else if let pump = stdin {
                stdinStep(pump.step())
            } else {
                pump()
            }
        case .stdinRead where stdin != nil, .chunkHeader where stdin != nil, .sendChunk where stdin != nil:
            if let pump = stdin { stdinStep(pump.complete(c)) }
        default:
            guard let conn = connection else { return }
            writerEvent(conn.writer.complete(c))
        }
    }

    package func tick(now: UInt64, on loop: EventLoop) {
        guard !done else { return }
        if connection != nil, handshake.awaitingBanner, Double(now &- lastActivity) / 1e9 > config.connectTimeoutSeconds {
            finish(.timeout("it did not open as an ft receiver within \(Int(config.connectTimeoutSeconds)) s of the connect: \(SenderHandshake.notOpened)", peer: peer))
            return
        }
        let verdict = clock.check(
            now: now, connected: connection != nil, connectDeadline: connectDeadline, writeErrorDeadline: writeError?.deadline,
            lastActivity: lastActivity,
            streams: streams.map { .init(connecting: $0.state == .connecting || $0.state == .handshaking, busy: $0.busy,
                                         lastProgress: $0.lastProgress) })
        switch verdict {
        case .none:
            break
        case .cancelConnect:
            if let s = pendingSocket {
                loop.backend.queue(.cancelFD(fd: s.fd), reg.userData(OpTag(.shutdown)))
                ownInflight += 1
            }
            connectDeadline = .max
        case .reportWriteError:
            if let (e, _) = writeError { finish(e) }
        case .killStream(let i, let why):
            streams[i].kill(why)
        case .idle(let seconds):
            finish(.timeout("no progress for \(seconds) s while \(phaseText)", peer: peer))
        }
    }

    /// Where the push stands, for messages.
    var phaseText: String { established ? machine.phase.description : "waiting for the receiver's handshake" }

    // MARK: Ending

    /// A write failed. The receiver may have said why just before closing,
    /// so give the reader a moment to bring that reason in.
    func writeFailed(_ e: TransferError) {
        guard writeError == nil, failure == nil else { return }
        writeError = (e, monotonicNanoseconds() + 2_000_000_000)
        connection?.channel.read()
    }

    func finish(_ error: TransferError?) {
        guard !done else { return }
        done = true
        hashAhead?.cancel()
        scanner?.cancel()
        for s in streams { s.kill(nil) }
        failure = error
        connection?.socket.shutdown()
        if let s = pendingSocket {
            loop.backend.queue(.cancelFD(fd: s.fd), reg.userData(OpTag(.shutdown)))
            ownInflight += 1
        }
    }
}
