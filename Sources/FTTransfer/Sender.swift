import FTEngine
import FTWire
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `ft send`: one push to one receiver, driven by a `SenderMachine` and a
/// `SendPlan` on the ring. All socket writes are serialised: a control
/// flush or one chunk at a time, so frames never interleave.
public final class Sender: LoopHandler {
    public let config: SendConfig
    public let logger: Logger
    public let items: [SourceItem]
    let loop: EventLoop
    private var reg: Registration!
    private var events: ProgressHandler = { _ in }

    private var socket: CInt = -1
    private var peer: String
    private var channel: FrameChannel!
    private var machine: SenderMachine
    private var plan: SendPlan?
    private var inflight = 0
    private var connected = false
    private var addresses: [SocketAddress] = []
    private var addressIndex = 0
    private let addressStorage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    private var connectError: IOError?
    private var deadline: UInt64 = 0
    private var lastActivity = monotonicNanoseconds()
    private let started = monotonicNanoseconds()

    private let header = UnsafeMutableRawBufferPointer.allocate(byteCount: DataHeader.wireSize, alignment: 8)
    /// zc: one header per registered buffer, and which buffers the kernel
    /// still holds (until their notification).
    private var zcHeaders = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var zcBusy: [Bool] = []
    private static let zcSendTag: UInt8 = 112
    private var pipe: Pipe?
    private var buffers: [UnsafeMutableRawBufferPointer] = []
    private var source: OpenSource?
    private var chunk: ChunkWrite?
    private var stream: StreamPump?
    private var meter: ProgressMeter
    private var sentDigests: [Int: Digest128] = [:]
    private var agreed: [(path: String, digest: Digest128)] = []
    private var skipped: UInt64 = 0
    private var relayed: [HopReport.Outcome] = []

    private var hashAhead: HashAhead?
    private var receiverNonce: [UInt8] = []
    private let code: [UInt8]?
    private let sessionID = AuthCode.randomBytes(16)
    private let nonce = AuthCode.randomBytes(32)
    private var failure: TransferError?
    private var writeError: (TransferError, deadline: UInt64)?
    private var summary: ProgressEvent.Summary?
    private var done = false

    /// `-P N`: the data streams, chunks to send again after one broke,
    /// files they read (open until acknowledged), and the plan's next step
    /// while it waits for a carrier.
    private var lanes: [SendLane] = []
    private var retry: [LaneChunk] = []
    private var laneSources: [Int: OpenSource] = [:]
    private var nextStep: SendPlan.Step?
    private var lanesBroken = 0

    /// The file whose chunks are going out.
    private final class OpenSource {
        let index: Int
        let fd: CInt
        let hasher: StreamHasher?
        init(index: Int, fd: CInt, verify: Bool) {
            self.index = index
            self.fd = fd
            self.hasher = verify ? StreamHasher() : nil
        }
        deinit { if fd != 0 { close(fd) } }
    }

    /// One chunk in flight: its completions are counted down.
    private struct ChunkWrite {
        var index: Int
        var offset: UInt64
        var length: Int
        var pending: Int
        /// splice: bytes already moved from the pipe to the socket.
        var spliced = 0
        var failed = false
        /// Buffer the copy and zc paths read into.
        var slot = 0
    }

    /// stdin: two buffers, one filling while the other is sent.
    private struct StreamPump {
        var index: Int
        var filled: [(buffer: Int, count: Int)] = []
        var reading: Int?
        var sending: Int?
        var eof = false
        var offset: UInt64 = 0
    }

    public init(config: SendConfig, logger: Logger) throws(TransferError) {
        self.config = config
        self.logger = logger
        items = try SourceTree.scan(config.paths, stdinName: config.stdinName) { logger.warning("\($0)") }
        if let text = config.code {
            guard let c = AuthCode.normalize(text) else { throw .source("'\(text)' is not a code like k7mq-2fxp-93rd") }
            code = c
        } else {
            code = nil
        }
        machine = SenderMachine(entries: items.map(\.entry), hasCode: code != nil)
        peer = config.endpoint.description
        let files = items.filter { $0.entry.kind != .directory }
        let total: UInt64? = files.contains { $0.entry.kind == .stream } ? nil : files.reduce(0) { $0 + $1.entry.size }
        meter = ProgressMeter(session: "send", totalBytes: total)
        do {
            let backend = try Engine.makeBackend(config.engine, logger: logger)
            loop = try EventLoop(backend: backend, logger: logger)
        } catch {
            throw .io(error)
        }
    }

    deinit {
        if socket >= 0 { close(socket) }
        addressStorage.deallocate()
        header.deallocate()
        zcHeaders.deallocate()
        for b in buffers { b.deallocate() }
    }

    public var backend: BackendKind { loop.backend.kind }

    private var chunkSize: Int {
        // A stream's chunk fits its pipe: file → pipe → socket, linked.
        if config.streams > 1 { return min(Int(config.chunkSize), SendConfig.pipeSize) }
        // Sealed chunks are read behind their header in a stream buffer.
        if config.encrypt { return min(Int(config.chunkSize), SendConfig.streamBuffer - DataHeader.wireSize) }
        switch config.path {
        case .splice: return min(Int(config.chunkSize), pipe?.capacity ?? SendConfig.pipeSize)
        case .copy, .zc: return min(Int(config.chunkSize), SendConfig.streamBuffer)
        case .sendfile: return Int(config.chunkSize)
        }
    }

    /// Runs the push to completion.
    public func run(events: @escaping ProgressHandler) throws(TransferError) -> ProgressEvent.Summary {
        self.events = events
        reg = loop.register(self)
        do {
            addresses = try config.endpoint.resolve()
        } catch {
            throw .io(error)
        }
        guard !addresses.isEmpty else {
            throw .io(IOError(.noSuchAddressOrDevice, "resolve", config.endpoint.description))
        }
        if config.streams > 1 {
            guard config.path == .sendfile || config.path == .splice else {
                throw .source("-P sends chunks with splice on its extra streams and hashes them apart; it works with --io sendfile or splice, not \(config.path.rawValue)")
            }
            guard !config.encrypt, config.relay == nil else {
                throw .source(config.encrypt ? "-P and --encrypt do not go together: sealed records travel on one stream"
                                             : "-P and --to do not go together: a chain push travels on one stream")
            }
        }
        if config.path == .splice {
            do { pipe = try Pipe(size: SendConfig.pipeSize) } catch { throw .io(error) }
        }
        if config.path == .zc {
            for i in 0..<SendConfig.zcSlots { _ = buffer(i) }
            do { try loop.backend.registerBuffers(buffers) } catch { throw .io(error) }
            zcHeaders = .allocate(byteCount: DataHeader.wireSize * SendConfig.zcSlots, alignment: 8)
            zcBusy = [Bool](repeating: false, count: SendConfig.zcSlots)
        }
        connectNext()
        do {
            try loop.run { done && inflight == 0 && lanes.allSatisfy { $0.inflight == 0 } }
        } catch {
            throw .io(error)
        }
        if let failure {
            events(.failed(.init(session: "send", peer: peer, message: failure.description)))
            throw failure
        }
        return summary!
    }

    // MARK: Connecting

    private func connectNext() {
        let address = addresses[addressIndex]
        peer = address.description
        do {
            socket = try Socket.makeTCP(family: address.family).release()
        } catch {
            finish(.io(error))
            return
        }
        addressStorage.pointee = address.storage
        loop.backend.adopt(socket: socket)
        deadline = monotonicNanoseconds() + UInt64(config.connectTimeoutSeconds * 1e9)
        addressStorage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            loop.backend.queue(.connect(fd: socket, address: sa, length: address.length), reg.userData(Tag.connect.rawValue))
        }
        inflight += 1
    }

    private func connectCompleted(_ result: Int32) {
        if result < 0 {
            var e = IOError(result: result, "connect to", peer)
            if result == -ECANCELED { e = IOError(.timedOut, "connect to", peer) }
            if e.errno == .connectionRefused { e.target = peer + " (is `ft recv` running there, on that port?)" }
            close(socket)
            socket = -1
            addressIndex += 1
            if addressIndex < addresses.count {
                connectError = e
                connectNext()
            } else {
                finish(.io(e))
            }
            return
        }
        connected = true
        Socket.setInt(socket, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
        Socket.setSendTimeout(socket, seconds: Int(config.idleTimeoutSeconds))
        channel = FrameChannel(fd: socket, peer: peer, buffered: true)
        var features: Features = config.verify ? [.xxh3] : []
        if config.encrypt { features.insert(.encrypt) }
        if config.streams > 1 { features.insert(.streams) }
        channel.enqueue(.hello(Hello(role: .sender, features: features, sessionID: sessionID, nonce: nonce)))
        pump()
        read()
    }

    // MARK: Completions

    public func complete(_ c: Completion, on loop: EventLoop) {
        inflight -= 1
        lastActivity = monotonicNanoseconds()
        if c.userData.tag >= Self.zcSendTag {
            zcSendCompleted(slot: Int(c.userData.tag - Self.zcSendTag), c)
            return
        }
        guard let tag = Tag(rawValue: c.userData.tag) else { return }
        switch tag {
        case .connect:
            connectCompleted(c.result)
        case .readPrefix, .readBody:
            guard failure == nil else { break }
            switch channel.onRead(c, loop, reg) {
            case .pending:
                inflight += 1
            case .frame(let f):
                act(machine.receive(f))
            case .closed:
                if let (e, _) = writeError { finish(e) } else if !done {
                    finish(.disconnected("the receiver closed the connection while \(machine.phase)", peer: peer))
                }
            case .failed(let e):
                finish(writeError?.0 ?? e)
            }
        case .sendControl:
            if let e = channel.onSent(c) {
                writeFailed(e)
            } else if stream != nil {
                if channel.flush(loop, reg) { inflight += 1 }
                streamStep()
            } else {
                pump()
            }
        case .sendChunk, .chunkHeader, .spliceIn, .spliceOut, .chunkRead:
            chunkCompleted(tag, c.result)
        case .streamRead:
            streamReadCompleted(c.result)
        case .pace:
            pacing = false
            pump()
        default:
            break
        }
    }

    public func tick(now: UInt64, on loop: EventLoop) {
        guard !done else { return }
        if !connected, now > deadline {
            loop.backend.queue(.cancelFD(fd: socket), reg.userData(Tag.shutdown.rawValue))
            inflight += 1
            deadline = .max
        } else if let (e, d) = writeError, now > d {
            finish(e)
        } else if let late = lanes.first(where: { ($0.state == .connecting || $0.state == .handshaking)
                                                       && Double(now - $0.lastProgress) / 1e9 > config.connectTimeoutSeconds }) {
            late.kill("no answer for \(Int(config.connectTimeoutSeconds)) s")
        } else if let stalled = lanes.first(where: { $0.current != nil && Double(now - $0.lastProgress) / 1e9 > laneStallSeconds }) {
            // One stream stopped moving while the push goes on: its chunks
            // go on the others.
            stalled.kill("no progress for \(Int(laneStallSeconds)) s")
        } else if connected, Double(now - lastActivity) / 1e9 > config.idleTimeoutSeconds {
            finish(.timeout("no progress for \(Int(config.idleTimeoutSeconds)) s while \(machine.phase)", peer: peer))
        }
    }

    private func read() {
        inflight += 1
        channel.readNext(loop, reg)
    }

    // MARK: Protocol actions

    private func act(_ action: SenderMachine.Action) {
        switch action {
        case .none:
            break
        case .authenticate(let receiver):
            receiverNonce = receiver.nonce
            channel.enqueue(.auth(AuthCode.proof(code: code!, role: .sender, session: sessionID,
                                                 senderNonce: nonce, receiverNonce: receiver.nonce)))
            pump()
        case .checkReceiver(let proof):
            let expected = AuthCode.proof(code: code!, role: .receiver, session: sessionID, senderNonce: nonce, receiverNonce: receiverNonce)
            guard AuthCode.matches(proof, expected) else {
                finish(.peer(ErrorFrame(.auth, "it could not prove it knows the code: a wrong code, or not the receiver you meant"), peer: peer))
                return
            }
            if config.encrypt {
                // Both proofs are in: everything from here on is sealed. The
                // receiver sends nothing after its proof until our manifest,
                // so nothing plain may be waiting in the read-ahead.
                guard !channel.hasBufferedInput else {
                    finish(.protocolViolation("the receiver sent more after its proof", peer: peer))
                    return
                }
                channel.cipher = SessionCipher(code: code!, role: .sender, session: sessionID,
                                               senderNonce: nonce, receiverNonce: receiverNonce)
            }
            act(machine.authenticated())
            return
        case .needCode:
            // Tell the receiver why we leave, directly: finish() closes at once.
            let bytes = FrameCodec.encode(.error(ErrorFrame(.auth, "the sender has no code (FT_CODE or --code-file)")))
            _ = bytes.withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            finish(.source("\(peer) requires its one-time code: run ft send with FT_CODE=CODE or --code-file FILE (ft recv printed the code)"))
            return
        case .sendManifest(_, let unauthenticated):
            if config.encrypt, channel.cipher == nil {
                finish(.source("\(peer) accepts anyone (--no-auth), so there is no code to make keys from; --encrypt needs a receiver with a code"))
                return
            }
            if unauthenticated { logger.warning("\(peer) accepts anyone (--no-auth); the code was not needed") }
            if let hops = config.relay { channel.enqueue(.relay(Relay(hops: hops))) }
            for part in Manifest.frames(items.map(\.entry)) { channel.enqueue(.manifest(part)) }
            let total = items.reduce(UInt64(0)) { $0 + ($1.entry.kind == .file ? $1.entry.size : 0) }
            channel.enqueue(.manifestEnd(ManifestEnd(entryCount: UInt32(items.count), totalBytes: total,
                                                     flags: config.verify ? [] : .noVerify)))
            pump()
        case .startData(let accept):
            if !accept.have.isEmpty {
                resumeSkips = decideResume(accept.have)
                channel.enqueue(.resume(Resume(skips: resumeSkips.map { Resume.Skip(fileID: $0.key, bytes: $0.value) })))
            }
            skipped = resumeSkips.values.reduce(0, +)
            meter.totalBytes = meter.totalBytes.map { $0 - min($0, skipped) }
            let plan = SendPlan(entries: items.map(\.entry), chunkSize: UInt32(chunkSize), skip: resumeSkips)
            self.plan = plan
            if config.verify, !config.encrypt, config.path == .sendfile || config.path == .splice {
                // sendfile and splice never bring the bytes into our memory:
                // hash them on a helper thread while the loop moves them.
                // Small files are hashed from the bytes already read for
                // their batch; only chunked files go to the helper, in the
                // plan's order (largest first), so its read-ahead window
                // follows what the loop sends.
                hashAhead = HashAhead(files: plan.chunkedFiles.compactMap { i in
                    guard case .file(let path) = items[i].origin else { return nil }
                    return (i, path, items[i].entry.size)
                })
                // Skipped bytes count as sent for the helper's read-ahead window.
                hashAhead?.sent(skipped)
            }
            let files = items.filter { $0.entry.kind != .directory }.count
            events(.started(.init(session: "send", peer: peer, files: files, directories: items.count - files,
                                  totalBytes: meter.totalBytes, skippedBytes: skipped)))
            openLanes()
            pump()
        case .acknowledged(let index, let ack):
            let path = items[index].displayPath
            for lane in lanes { lane.forget(index) }
            retry.removeAll { $0.index == index }
            laneSources[index] = nil
            guard ack.status == .committed else {
                finish(.verification("the receiver could not commit '\(path)' (\(ack.status))"))
                return
            }
            if let mine = sentDigests[index] {
                guard mine == ack.digest else {
                    finish(.verification("'\(path)': the receiver's hash \(ack.digest.hex) differs from ours \(mine.hex)"))
                    return
                }
                agreed.append((path, mine))
            }
            let size = items[index].entry.kind == .stream ? streamFinal : items[index].entry.size
            events(.fileDone(.init(session: "send", path: path, bytes: size, digest: sentDigests[index])))
        case .complete(let d):
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            let files = items.filter { $0.entry.kind != .directory }.count
            summary = .init(session: "send", peer: peer, files: files, directories: items.count - files,
                            bytes: d.bytes - min(d.bytes, skipped), skippedBytes: skipped, seconds: seconds, verified: config.verify,
                            digests: agreed,
                            engine: EngineReport(backend: loop.backend.kind, dataPath: config.path.rawValue, stats: loop.stats),
                            relayed: relayed)
            if let ev = meter.advance(by: 0, path: "", fileBytes: 0, fileSize: nil, force: true) { events(ev) }
            events(.finished(summary!))
            finish(nil)
        case .hopReport(let r):
            relayed = r.outcomes
        case .peerFailed(let e):
            finish(.peer(e, peer: peer))
        case .violation(let s):
            finish(.protocolViolation(s, peer: peer))
        }
        if !done, failure == nil, !channel.reading { read() }
    }

    // MARK: Writing

    private var writeBusy: Bool {
        channel.writing || chunk != nil || stream != nil || pacing || (config.path == .zc && !zcBusy.contains(false))
    }

    // --limit: chunks start no earlier than the rate allows.
    private var pacing = false
    private var pacedBytes: UInt64 = 0
    private var paceStart: UInt64 = 0

    /// True when the next chunk must wait (a timer is then armed).
    private func mustPace() -> Bool {
        guard let rate = config.rateLimit, rate > 0 else { return false }
        let now = monotonicNanoseconds()
        if paceStart == 0 { paceStart = now }
        let due = paceStart + UInt64(Double(pacedBytes) / Double(rate) * 1e9)
        guard now < due else { return false }
        pacing = true
        inflight += 1
        loop.backend.queue(.timeout(nanoseconds: due - now), reg.userData(Tag.pace.rawValue))
        return true
    }

    /// Starts the next writes: control frames and the plan's steps on this
    /// connection, chunks on a ready data stream (or here, when none is).
    private func pump() {
        while failure == nil, writeError == nil {
            if !writeBusy, channel.hasQueued {
                if channel.flush(loop, reg) { inflight += 1 }
                continue
            }
            guard machine.phase == .sending || machine.phase == .awaitingDone, plan != nil else { return }
            if nextStep == nil, machine.phase == .sending { nextStep = plan!.next() }
            var planChunk: LaneChunk?
            if case .chunk(let index, let offset, let length) = nextStep {
                planChunk = LaneChunk(index: index, offset: offset, length: Int(length))
            }
            if !retry.isEmpty || planChunk != nil {
                // Chunks wait for the streams while they connect (a chunk here
                // would hold this connection's control frames back); they
                // come here only when every stream is gone.
                let lane = lanes.first { $0.idle }
                guard lane != nil || (!writeBusy && lanes.allSatisfy { $0.state == .dead }) else { return }
                guard !pacing, !mustPace() else { return }
                let c: LaneChunk
                if retry.isEmpty {
                    c = planChunk!
                    nextStep = nil
                } else {
                    c = retry.removeFirst()
                }
                if let lane { lane.send(c) } else { startChunk(c.index, c.offset, c.length) }
                continue
            }
            guard let step = nextStep, !writeBusy else { return }
            nextStep = nil
            switch step {
            case .chunk:
                preconditionFailure("chunks are handed out above")
            case .stream(let index):
                stream = StreamPump(index: index)
                streamStep()
            case .fileEnd(let index):
                fileEnd(index)
            case .small(let indexes):
                sendSmall(indexes)
            case .end:
                // Chunks still on other streams are waited for by the
                // receiver, which holds a file's trailer until its bytes are in.
                channel.enqueue(.end)
                machine.endSent()
            }
        }
    }

    // MARK: Data streams (-P)

    private var laneStallSeconds: Double { max(5, config.idleTimeoutSeconds / 4) }

    private func openLanes() {
        guard config.streams > 1 else { return }
        guard machine.receiverFeatures.contains(.streams) else {
            logger.warning("\(peer) takes one stream per push (an older ft, or it writes to stdout); -P \(config.streams) falls back to one")
            return
        }
        for n in 1...config.streams {
            do {
                lanes.append(try SendLane(owner: self, number: n, address: addresses[addressIndex], sessionID: sessionID, code: code))
            } catch {
                logger.warning("could not open data stream \(n) to \(peer): \(error)")
            }
        }
    }

    private func openSource(_ index: Int) throws(TransferError) -> OpenSource {
        if let s = source, s.index == index { return s }
        let fd = try openFile(index)
        let s = OpenSource(index: index, fd: fd, verify: config.verify && hashAhead == nil)
        // The copy and zc paths hash what they read; a resumed prefix is not
        // read again for sending, so it is hashed here first.
        if let h = s.hasher, let prefix = resumeSkips[items[index].entry.fileID], prefix > 0 {
            do { try h.update(fd: fd, offset: 0, length: prefix) } catch { throw .io(error) }
        }
        source = s
        return s
    }

    /// Entry `index`'s file, opened for sequential reading.
    private func openFile(_ index: Int) throws(TransferError) -> CInt {
        guard case .file(let path) = items[index].origin else { preconditionFailure("not a file") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(IOError(Errno(rawValue: errno), "open", path)) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        return fd
    }

    /// Prefixes the receiver holds that hash the same here: those are not
    /// sent again. A prefix that differs (the file changed, or the partial
    /// was damaged) is left out, and the receiver discards it.
    private var resumeSkips: [UInt32: UInt64] = [:]

    private func decideResume(_ have: [Accept.Have]) -> [UInt32: UInt64] {
        var skips: [UInt32: UInt64] = [:]
        for h in have {
            guard let item = items.first(where: { $0.entry.fileID == h.fileID }), item.entry.kind == .file,
                  h.bytes <= item.entry.size, case .file(let path) = item.origin else { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            let hasher = StreamHasher()
            guard (try? hasher.update(fd: fd, offset: 0, length: h.bytes)) != nil else { continue }
            if hasher.digest() == h.digest {
                skips[h.fileID] = h.bytes
            } else {
                logger.info("'\(item.displayPath)': the receiver's partial copy differs from this file; sending it whole")
            }
        }
        return skips
    }

    private func startChunk(_ index: Int, _ offset: UInt64, _ length: Int) {
        let src: OpenSource
        do { src = try openSource(index) } catch {
            finish(error)
            return
        }
        DataHeader(fileID: items[index].entry.fileID, length: UInt32(length), offset: offset).encode(into: header)
        let hdr = UnsafeRawPointer(header.baseAddress!)
        let more = CInt(MSG_MORE) | CInt(MSG_NOSIGNAL) | CInt(MSG_WAITALL)
        if config.encrypt {
            // Read into our buffer; the completion hashes, seals and queues it.
            chunk = ChunkWrite(index: index, offset: offset, length: length, pending: 1)
            inflight += 1
            loop.backend.queue(.read(fd: src.fd, buffer: buffer(0).baseAddress! + DataHeader.wireSize, length: length,
                                     offset: Int64(offset)),
                               reg.userData(Tag.chunkRead.rawValue))
            return
        }
        switch config.path {
        case .sendfile:
            chunk = ChunkWrite(index: index, offset: offset, length: length, pending: 1)
            inflight += 1
            loop.backend.queue(.sendfile(socket: socket, file: src.fd, offset: Int64(offset), length: length,
                                         header: hdr, headerLength: DataHeader.wireSize),
                               reg.userData(Tag.sendChunk.rawValue))
        case .splice:
            let pipe = pipe!
            chunk = ChunkWrite(index: index, offset: offset, length: length, pending: 3)
            inflight += 3
            loop.backend.queue(.send(fd: socket, buffer: hdr, length: DataHeader.wireSize, flags: more),
                               reg.userData(Tag.chunkHeader.rawValue), link: true)
            loop.backend.queue(.splice(input: src.fd, inputOffset: Int64(offset), output: pipe.writeEnd,
                                       outputOffset: Op.noOffset, length: length, flags: 0),
                               reg.userData(Tag.spliceIn.rawValue), link: true)
            loop.backend.queue(.splice(input: pipe.readEnd, inputOffset: Op.noOffset, output: socket,
                                       outputOffset: Op.noOffset, length: length, flags: 0),
                               reg.userData(Tag.spliceOut.rawValue))
        case .zc:
            let slot = zcBusy.firstIndex(of: false)!
            zcBusy[slot] = true
            let buf = buffers[slot]
            let hdrSlot = UnsafeMutableRawBufferPointer(rebasing: zcHeaders[slot * DataHeader.wireSize..<(slot + 1) * DataHeader.wireSize])
            hdrSlot.copyMemory(from: UnsafeRawBufferPointer(header))
            chunk = ChunkWrite(index: index, offset: offset, length: length, pending: 3, slot: slot)
            inflight += 3
            loop.backend.queue(.readFixed(fd: src.fd, buffer: buf.baseAddress!, length: length, offset: Int64(offset), index: UInt16(slot)),
                               reg.userData(Tag.chunkRead.rawValue), link: true)
            loop.backend.queue(.send(fd: socket, buffer: hdrSlot.baseAddress!, length: DataHeader.wireSize, flags: more),
                               reg.userData(Tag.chunkHeader.rawValue), link: true)
            loop.backend.queue(.sendZC(fd: socket, buffer: buf.baseAddress!, length: length,
                                       flags: CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL), index: UInt16(slot)),
                               reg.userData(Self.zcSendTag + UInt8(slot)))
        case .copy:
            let buf = buffer(0)
            chunk = ChunkWrite(index: index, offset: offset, length: length, pending: 3)
            inflight += 3
            loop.backend.queue(.read(fd: src.fd, buffer: buf.baseAddress!, length: length, offset: Int64(offset)),
                               reg.userData(Tag.chunkRead.rawValue), link: true)
            loop.backend.queue(.send(fd: socket, buffer: hdr, length: DataHeader.wireSize, flags: more),
                               reg.userData(Tag.chunkHeader.rawValue), link: true)
            loop.backend.queue(.send(fd: socket, buffer: buf.baseAddress!, length: length,
                                     flags: CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL)),
                               reg.userData(Tag.sendChunk.rawValue))
        }
    }

    private func buffer(_ i: Int) -> UnsafeMutableRawBufferPointer {
        while buffers.count <= i {
            buffers.append(.allocate(byteCount: SendConfig.streamBuffer, alignment: 4096))
        }
        return buffers[i]
    }

    private func chunkCompleted(_ tag: Tag, _ result: Int32) {
        if stream != nil, tag == .sendChunk || tag == .chunkHeader {
            streamSendCompleted(tag, result)
            return
        }
        guard var c = chunk else { return }
        c.pending -= 1
        let name = items[c.index].displayPath
        switch tag {
        case .chunkHeader where result >= 0 && Int(result) < DataHeader.wireSize:
            c.failed = true
        case .spliceIn, .chunkRead:
            if result >= 0, Int(result) < c.length {
                c.failed = true
                finish(.source("'\(name)' shrank while being sent (read \(c.offset + UInt64(result)) of \(items[c.index].entry.size) bytes)"))
            } else if tag == .chunkRead, result > 0 {
                // Sealed chunks sit behind room for their header.
                let at = config.encrypt ? DataHeader.wireSize : 0
                let base = buffers[c.slot].baseAddress!
                source?.hasher?.update(UnsafeRawBufferPointer(start: base + at, count: Int(result)))
                if config.encrypt {
                    let frame = UnsafeMutableRawBufferPointer(start: base, count: at + Int(result))
                    DataHeader(fileID: items[c.index].entry.fileID, length: UInt32(result), offset: c.offset).encode(into: frame)
                    channel.enqueueSealed(frame: UnsafeRawBufferPointer(frame))
                }
            }
        case .spliceOut where result > 0:
            c.spliced += Int(result)
            if c.spliced < c.length, !c.failed {
                // A short write to the socket: the rest is still in the pipe.
                c.pending += 1
                inflight += 1
                loop.backend.queue(.splice(input: pipe!.readEnd, inputOffset: Op.noOffset, output: socket,
                                           outputOffset: Op.noOffset, length: c.length - c.spliced, flags: 0),
                                   reg.userData(Tag.spliceOut.rawValue))
            }
        case .sendChunk where result >= 0 && Int(result) < c.length:
            c.failed = true
        default:
            break
        }
        if result < 0, result != -ECANCELED, !c.failed {
            c.failed = true
            let e: TransferError
            if tag == .spliceIn || tag == .chunkRead {
                e = .io(IOError(result: result, "read", name))
            } else if result == -EAGAIN || result == -ETIMEDOUT {
                e = .timeout("it stopped reading; nothing could be sent for \(Int(config.idleTimeoutSeconds)) s", peer: peer)
            } else {
                e = .io(IOError(result: result, "send to", peer))
            }
            writeFailed(e)
        }
        chunk = c
        guard c.pending == 0 else { return }
        chunk = nil
        if c.failed {
            if failure == nil, writeError == nil {
                writeFailed(.disconnected("a chunk of '\(name)' went out short", peer: peer))
            }
            return
        }
        chunkOut(LaneChunk(index: c.index, offset: c.offset, length: c.length))
        pump()
    }

    /// A chunk is out on some stream: count it.
    private func chunkOut(_ c: LaneChunk) {
        hashAhead?.sent(UInt64(c.length))
        pacedBytes += UInt64(c.length)
        if let ev = meter.advance(by: UInt64(c.length), path: items[c.index].displayPath, fileBytes: c.offset + UInt64(c.length),
                                  fileSize: items[c.index].entry.size) {
            events(ev)
        }
    }

    /// A zero-copy send reports twice: its result (counted like any chunk
    /// completion) and, later, that its buffer is free.
    private func zcSendCompleted(slot: Int, _ c: Completion) {
        if c.flags & Completion.notification != 0 {
            zcBusy[slot] = false
            pump()
            return
        }
        if c.flags & Completion.more != 0 {
            inflight += 1  // the notification is still to come
        } else {
            zcBusy[slot] = false
        }
        chunkCompleted(.sendChunk, c.result)
    }

    /// Whole small files in one `small-files` frame, each read straight
    /// into the frame being queued and hashed there.
    private func sendSmall(_ indexes: [Int]) {
        let capacity = SmallFiles.bodySize(fileSizes: indexes.lazy.map { Int(self.items[$0].entry.size) })
        var total: UInt64 = 0
        do {
            try channel.enqueue(.smallFiles, bodyCapacity: capacity) { body throws(TransferError) in
                var batch = SmallFilesBuilder(body: body)
                for i in indexes {
                    let item = items[i]
                    guard case .file(let path) = item.origin else { continue }
                    try batch.add(fileID: item.entry.fileID, size: Int(item.entry.size)) { content throws(TransferError) in
                        try Self.readWhole(path, item, into: content)
                        guard config.verify else { return nil }
                        let digest = StreamHasher.hash(UnsafeRawBufferPointer(content))
                        sentDigests[i] = digest
                        return digest
                    }
                    total += item.entry.size
                }
                return batch.length
            }
        } catch {
            finish(error)
            return
        }
        if let last = indexes.last, let ev = meter.advance(by: total, path: items[last].displayPath, fileBytes: items[last].entry.size,
                                                            fileSize: items[last].entry.size) {
            events(ev)
        }
    }

    /// A small file's bytes, exactly as many as the manifest promised.
    static func readWhole(_ path: String, _ item: SourceItem, into buffer: UnsafeMutableRawBufferPointer) throws(TransferError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(IOError(Errno(rawValue: errno), "open", path)) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, UInt64(st.st_size) == item.entry.size, Int64(st.st_mtim.tv_sec) == item.entry.mtimeSeconds,
              UInt32(st.st_mtim.tv_nsec) == item.entry.mtimeNanoseconds else {
            throw .source("'\(item.displayPath)' changed while being sent; send it again")
        }
        var done = 0
        while done < buffer.count {
            let n = Glibc.read(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw .source("'\(item.displayPath)' shrank while being sent") }
            done += n
        }
    }

    private func fileEnd(_ index: Int) {
        let item = items[index]
        var size = item.entry.size
        var digest: Digest128?
        if item.entry.kind == .stream {
            size = streamFinal
            digest = streamHasher?.digest()
            streamHasher = nil
        } else {
            let src: OpenSource
            do { src = try openSource(index) } catch {
                finish(error)
                return
            }
            var st = stat()
            if fstat(src.fd, &st) == 0,
               UInt64(st.st_size) != item.entry.size || Int64(st.st_mtim.tv_sec) != item.entry.mtimeSeconds
                || UInt32(st.st_mtim.tv_nsec) != item.entry.mtimeNanoseconds {
                finish(.source("'\(item.displayPath)' changed while being sent; send it again"))
                return
            }
            if let hashAhead {
                do { digest = try hashAhead.digest(index) } catch {
                    finish(.io(error))
                    return
                }
            } else {
                digest = src.hasher?.digest()
            }
            source = nil
        }
        if let digest { sentDigests[index] = digest }
        channel.enqueue(.fileEnd(FileEnd(fileID: item.entry.fileID, size: size, digest: digest)))
        if item.entry.size == 0, item.entry.kind == .file,
           let ev = meter.advance(by: 0, path: item.displayPath, fileBytes: 0, fileSize: 0) {
            events(ev)
        }
    }

    // MARK: stdin

    private var streamHasher: StreamHasher?

    private func streamStep() {
        guard var s = stream, failure == nil else { return }
        if streamHasher == nil, config.verify { streamHasher = StreamHasher() }
        if config.encrypt {
            // Sealed: each filled buffer becomes a record in the channel's
            // queue at once; reads wait while much is queued.
            while !s.filled.isEmpty {
                let (b, n) = s.filled.removeFirst()
                channel.enqueueSealed(DataHeader(fileID: items[s.index].entry.fileID, length: UInt32(n), offset: s.offset),
                                      UnsafeRawBufferPointer(start: buffer(b).baseAddress, count: n))
                s.offset += UInt64(n)
                if let ev = meter.advance(by: UInt64(n), path: items[s.index].displayPath, fileBytes: s.offset, fileSize: nil) { events(ev) }
            }
            if channel.flush(loop, reg) { inflight += 1 }
        } else if s.sending == nil, !s.filled.isEmpty {
            let (b, n) = s.filled.removeFirst()
            s.sending = b
            DataHeader(fileID: items[s.index].entry.fileID, length: UInt32(n), offset: s.offset).encode(into: header)
            s.offset += UInt64(n)
            inflight += 2
            loop.backend.queue(.send(fd: socket, buffer: header.baseAddress!, length: DataHeader.wireSize,
                                     flags: CInt(MSG_MORE) | CInt(MSG_NOSIGNAL) | CInt(MSG_WAITALL)),
                               reg.userData(Tag.chunkHeader.rawValue), link: true)
            loop.backend.queue(.send(fd: socket, buffer: buffer(b).baseAddress!, length: n,
                                     flags: CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL)),
                               reg.userData(Tag.sendChunk.rawValue))
        }
        if s.reading == nil, !s.eof, !config.encrypt || channel.queuedCount < 4 << 20 {
            let busy = Set(s.filled.map(\.buffer) + (s.sending.map { [$0] } ?? []))
            if let free = (0..<2).first(where: { !busy.contains($0) }) {
                s.reading = free
                inflight += 1
                loop.backend.queue(.read(fd: 0, buffer: buffer(free).baseAddress!, length: SendConfig.streamBuffer,
                                         offset: Op.noOffset),
                                   reg.userData(Tag.streamRead.rawValue))
            }
        }
        stream = s
        if s.eof, s.filled.isEmpty, s.sending == nil, s.reading == nil, !channel.writing, !channel.hasQueued {
            // The plan's next step is this stream's trailer.
            stream = nil
            streamFinal = s.offset
            pump()
        }
    }

    /// Length of the finished stream, for its trailer and report.
    private var streamFinal: UInt64 = 0

    private func streamReadCompleted(_ result: Int32) {
        guard var s = stream else { return }
        let b = s.reading!
        s.reading = nil
        if result < 0 {
            stream = s
            finish(.io(IOError(result: result, "read", "stdin")))
            return
        }
        if result == 0 {
            s.eof = true
        } else {
            streamHasher?.update(UnsafeRawBufferPointer(start: buffer(b).baseAddress, count: Int(result)))
            s.filled.append((b, Int(result)))
        }
        stream = s
        streamStep()
    }

    private func streamSendCompleted(_ tag: Tag, _ result: Int32) {
        guard var s = stream else { return }
        if result < 0, result != -ECANCELED {
            stream = s
            writeFailed(.io(IOError(result: result, "send to", peer)))
            return
        }
        if tag == .sendChunk {
            s.sending = nil
            stream = s
            if let ev = meter.advance(by: UInt64(max(result, 0)), path: items[s.index].displayPath,
                                      fileBytes: s.offset, fileSize: nil) {
                events(ev)
            }
            streamStep()
        }
    }

    // MARK: Ending

    /// A write failed. The receiver may have said why just before closing,
    /// so give the reader a moment to bring that reason in.
    private func writeFailed(_ e: TransferError) {
        guard writeError == nil, failure == nil else { return }
        writeError = (e, monotonicNanoseconds() + 2_000_000_000)
        if !channel.reading { read() }
    }

    private func finish(_ error: TransferError?) {
        guard !done else { return }
        done = true
        hashAhead?.cancel()
        for lane in lanes { lane.kill(nil) }
        failure = error
        if socket >= 0 { _ = shutdown(socket, CInt(SHUT_RDWR)) }
        if !connected, socket >= 0 {
            loop.backend.queue(.cancelFD(fd: socket), reg.userData(Tag.shutdown.rawValue))
            inflight += 1
        }
    }
}

extension Sender: SendLaneOwner {
    func laneSource(_ index: Int) -> (fd: CInt, fileID: UInt32, keep: AnyObject)? {
        if let s = laneSources[index] { return (s.fd, items[index].entry.fileID, s) }
        let fd: CInt
        do { fd = try openFile(index) } catch {
            finish(error)
            return nil
        }
        let s = OpenSource(index: index, fd: fd, verify: false)
        laneSources[index] = s
        return (fd, items[index].entry.fileID, s)
    }

    func laneReady(_ lane: SendLane) {
        logger.debug("data stream \(lane.number) to \(peer) is ready")
        pump()
    }

    func laneChunkSent(_ lane: SendLane, _ chunk: LaneChunk) {
        chunkOut(chunk)
        pump()
    }

    func laneDied(_ lane: SendLane, _ why: String, lost: [LaneChunk]) {
        guard !done else { return }
        lanesBroken += 1
        let unacked = lost.filter { !machine.isAcknowledged($0.index) }
        logger.warning("data stream \(lane.number) to \(peer) broke (\(why)); \(unacked.count) of its chunks go again on the others")
        retry.append(contentsOf: unacked)
        pump()
    }

    func laneSourceFailed(_ message: String) {
        finish(.source(message))
    }

    func laneActivity() {
        lastActivity = monotonicNanoseconds()
    }
}
