import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One sender's connection to the receiver: drives a `ReceiverMachine` with
/// the socket's frames and carries out its actions on the ring. Every
/// session runs on the receiver's one loop thread; none blocks another.
final class ReceiverSession: LoopHandler {
    unowned let server: Receiver
    let id: String
    let peer: String
    private let socket: CInt
    private let channel: FrameChannel
    private var reg: Registration!
    private var machine: ReceiverMachine
    private let receiverNonce = AuthCode.randomBytes(32)
    private var inflight = 0
    private var lastActivity = monotonicNanoseconds()
    private let started = monotonicNanoseconds()

    private var pipes: [Pipe] = []
    private var lanes: SpliceLanes?
    private var copyBuffer: UnsafeMutableRawBufferPointer?
    private var sinks: [Int: FileSink] = [:]
    private var payload: Payload?
    private var meter: ProgressMeter
    private var createdDirectories: [Int] = []
    private var directoryCache: [PeerPath: Directory] = [:]
    /// Partials from earlier pushes, offered in `accept`, by entry index.
    private var held: [Int: HeldPrefix] = [:]
    /// Whether a failure keeps stored prefixes for a later resume.
    private var keepPartials = true
    private var digests: [(path: String, digest: Digest128)] = []

    /// Chain push: the connection to the next host, its lanes' second
    /// pipes, and our `done` held until that host has answered.
    private var link: RelayLink?
    private var relayPipes: [Pipe] = []
    private var heldDone: Done?
    private var reviewWaitsForLink = false

    /// Counted against the receiver's session limit (past the handshake).
    var admitted = false

    /// Parallel streams. On a push: its extra data streams. On a lane: the
    /// push it carries chunks for (whose machine checks them, whose sinks
    /// take them, and whose meter counts them).
    private var laneSessions: [ReceiverSession] = []
    private var owner: ReceiverSession?
    /// A lane attached to its push (counted apart from pending hellos).
    private(set) var joined = false
    /// Only a lane may speak here (`ft recv --once` serves one push).
    let lanesOnly: Bool
    var isLane: Bool { machine.isLane }
    static let maxLanes = 16

    /// Why the session ends; nil while it runs or when it succeeded.
    private(set) var failure: String?
    private(set) var succeeded = false
    private var closing: Closing?

    private struct Closing {
        var shutWrite = false
        var readDone = false
        var deadline: UInt64
    }

    /// A payload being moved from the socket to entry `index`.
    private struct Payload {
        var index: Int
        /// Held here too: a lane's writes keep the fd open whatever its
        /// push does meanwhile.
        var sink: FileSink?
        var length: UInt64
        var start: UInt64
        var offset: UInt64
        var remaining: UInt64
        /// copy: bytes in the buffer, and how many of them are written.
        var piece = 0
        var written = 0
        /// Where those bytes are: our copy buffer, or an opened sealed record.
        var source: UnsafeRawPointer?
        var inFlight = 0
    }

    /// The peer's address without the port, for per-host auth throttling.
    let peerHost: String

    init(server: Receiver, socket: CInt, peer: String, peerHost: String, lanesOnly: Bool = false) {
        self.lanesOnly = lanesOnly
        self.peerHost = peerHost
        self.server = server
        self.socket = socket
        self.peer = peer
        self.id = randomHex(4)
        self.channel = FrameChannel(fd: socket, peer: peer)
        self.meter = ProgressMeter(session: id, totalBytes: nil)
        self.machine = ReceiverMachine(requireAuth: server.code != nil, allowSensitive: server.config.allowSensitive)
    }

    deinit {
        copyBuffer?.deallocate()
        close(socket)
    }

    var loop: EventLoop { server.loop }
    /// stdout takes the copy path when verifying (the bytes must pass
    /// through memory to be hashed) and may splice when not.
    var dataPath: String {
        if channel.cipher != nil { return "copy (encrypted)" }
        if link != nil { return "splice+tee (relay)" }
        return config.toStdout && machine.verify ? ReceivePath.copy.rawValue : config.path.rawValue
    }
    var config: ReceiverConfig { server.config }

    func start() {
        reg = loop.register(self)
        loop.backend.adopt(socket: socket)
        read()
    }

    private func read() {
        inflight += 1
        channel.readNext(loop, reg)
    }

    private func flush() {
        if channel.flush(loop, reg) { inflight += 1 }
    }

    // MARK: Completions

    func complete(_ c: Completion, on loop: EventLoop) {
        inflight -= 1
        lastActivity = monotonicNanoseconds()
        owner?.lastActivity = lastActivity
        if c.userData.tag >= Self.fillTag {
            if closing == nil { laneCompleted(c.userData.tag, c.result) }
            finishIfClosed()
            return
        }
        guard let tag = Tag(rawValue: c.userData.tag) else { return }
        if closing != nil {
            completeWhileClosing(tag, c)
            return
        }
        switch tag {
        case .readPrefix, .readBody:
            switch channel.onRead(c, loop, reg) {
            case .pending:
                inflight += 1
            case .frame(let f):
                relayForward(f)
                act(machine.receive(f))
            case .closed where owner != nil:
                // The sender is done with this stream.
                laneEnded(nil)
            case .failed(let e) where owner != nil:
                laneEnded(e.description)
            case .closed:
                fail(.disconnected("closed by the sender while \(machine.phase)", peer: peer), tellPeer: false)
            case .failed(let e):
                fail(e, tellPeer: true)
            }
        case .sendControl:
            if let e = channel.onSent(c) { fail(e, tellPeer: false) } else { flush() }
        case .payloadRecv, .payloadWrite:
            copyCompleted(tag, c.result)
        case .discardRecv:
            discardCompleted(c.result)
        default:
            break
        }
        finishIfClosed()
    }

    func tick(now: UInt64, on loop: EventLoop) {
        if var cl = closing {
            if now >= cl.deadline, !cl.readDone {
                // The peer did not close after our last frame: cut it off.
                _ = shutdown(socket, CInt(SHUT_RDWR))
                cl.readDone = true
                closing = cl
            }
            finishIfClosed()
            return
        }
        let limit = machine.phase == .awaitingHello ? config.handshakeTimeoutSeconds : config.idleTimeoutSeconds
        if owner != nil, payload != nil, Double(now - lastActivity) / 1e9 > limit {
            laneEnded("no progress for \(Int(limit)) s")
            finishIfClosed()
            return
        }
        if owner != nil, payload == nil {
            // An idle lane is fine while its push moves; the push's own
            // check covers a stall (its lanes' work keeps it alive).
            return
        }
        if Double(now - lastActivity) / 1e9 > limit {
            let what = machine.phase == .awaitingHello ? "no hello" : "no progress while \(machine.phase)"
            fail(.timeout("\(what) for \(Int(limit)) s", peer: peer), tellPeer: true)
            finishIfClosed()
        }
    }

    // MARK: Actions

    private func act(_ action: ReceiverMachine.Action) {
        switch action {
        case .none:
            read()
        case .replyHello(let version):
            let asked = machine.senderHello!.features.contains(.encrypt)
            if asked, server.code == nil {
                let why = "--encrypt needs the one-time code to make keys, and this receiver accepts anyone (--no-auth)"
                fail(.refused(ErrorFrame(.refused, why), peer: peer), frame: ErrorFrame(.refused, why))
                return
            }
            if !asked, config.requireEncryption {
                let why = "this receiver takes encrypted pushes only: run ft send with --encrypt"
                fail(.refused(ErrorFrame(.refused, why), peer: peer), frame: ErrorFrame(.refused, why))
                return
            }
            if lanesOnly, !machine.isLane {
                let why = "this receiver serves one push (--once) and it is under way; try again when it is done"
                fail(.refused(ErrorFrame(.busy, why), peer: peer), frame: ErrorFrame(.busy, why))
                return
            }
            var features: Features = server.code != nil ? [.xxh3, .auth] : [.xxh3]
            if asked { features.insert(.encrypt) }
            if machine.senderHello!.features.contains(.streams), !machine.isLane, !asked, !config.toStdout {
                features.insert(.streams)
                machine.allowStreams()
            }
            var hello = Hello(role: .receiver, features: features,
                              sessionID: machine.senderHello!.sessionID, nonce: receiverNonce)
            hello.minVersion = version
            hello.maxVersion = version
            channel.enqueue(.hello(hello))
            flush()
            if let join = machine.laneToJoin {
                act(join)
                return
            }
            read()
        case .checkAuth(let proof):
            let h = machine.senderHello!
            guard let code = server.code,
                  AuthCode.matches(proof, AuthCode.proof(code: code, role: .sender, session: h.sessionID,
                                                          senderNonce: h.nonce, receiverNonce: receiverNonce)) else {
                server.authFailed(peer: peerHost)
                fail(.refused(ErrorFrame(.auth, "wrong code: the sender's proof does not match this receiver's one-time code"), peer: peer),
                     frame: ErrorFrame(.auth, "wrong code: this receiver's one-time code is different (check FT_CODE or --code-file)"))
                return
            }
            machine.authenticated()
            if let join = machine.laneToJoin {
                // A lane's push already proved both sides; no proof back.
                act(join)
                return
            }
            channel.enqueue(.auth(AuthCode.proof(code: code, role: .receiver, session: h.sessionID,
                                                 senderNonce: h.nonce, receiverNonce: receiverNonce)))
            flush()
            if h.features.contains(.encrypt) {
                // Our proof left in the clear; everything after it is sealed.
                channel.cipher = SessionCipher(code: code, role: .receiver, session: h.sessionID,
                                               senderNonce: h.nonce, receiverNonce: receiverNonce)
            }
            read()
        case .review:
            guard server.admit(self) else {
                let why = "the receiver is serving \(config.maxSessions) pushes, its limit; try again later"
                fail(.refused(ErrorFrame(.busy, why), peer: peer), frame: ErrorFrame(.busy, why))
                return
            }
            do throws(TransferError) {
                try review()
            } catch {
                fail(error, tellPeer: true)
                return
            }
            if let link, !link.final, link.state != .ready {
                // The next host gets its chance to accept first: a refusal
                // then passes it by before any data is committed to it.
                reviewWaitsForLink = true
                return
            }
            sendAccept()
        case .relay(let hops):
            startRelay(hops)
        case .resume(let keep, let drop):
            for i in drop {
                // The held fd closes with the HeldPrefix; its bytes go.
                if held.removeValue(forKey: i) != nil, let dir = try? parentDirectory(of: machine.entries[i].path) {
                    Partial(machine.entries[i].entry).remove(in: dir)
                }
            }
            skippedBytes = keep.reduce(0) { $0 + $1.bytes }
            announceStart()
            read()
        case .store(let index, let offset, let length):
            startPayload(index: index, offset: offset, length: length)
        case .discard(let length):
            startDiscard(length)
        case .joinLane(let sessionID):
            joinLane(sessionID)
        case .laneData(let h):
            guard let owner else { return }
            let a = owner.machine.laneData(h)
            switch a {
            case .store, .discard:
                act(a)
            case .fail(let e):
                owner.fail(.refused(e, peer: owner.peer), frame: e)
            default:
                break
            }
        case .storeSmall(let arrivals):
            do throws(TransferError) {
                for a in arrivals { try storeWhole(a) }
            } catch {
                fail(error, tellPeer: true)
                return
            }
            flush()
            var next = ReceiverMachine.Action.none
            for a in arrivals { next = machine.finished(index: a.index, bytes: UInt64(a.file.bytes.count)) }
            if case .complete = next { act(next) } else { read() }
        case .finish(let index):
            do throws(TransferError) {
                try finish(index)
            } catch {
                fail(error, tellPeer: true)
                return
            }
            let bytes = machine.entries[index].trailer!.size
            let next = machine.finished(index: index, bytes: bytes)
            if case .complete = next { act(next) } else { read() }
        case .complete(let done):
            applyDirectoryMetadata()
            if let link, !link.final {
                // Our copy is whole; `done` waits for the next host's news.
                heldDone = done
                return
            }
            complete(done)
        case .fail(let e):
            fail(.refused(e, peer: peer), frame: e)
        case .peerFailed(let e):
            fail(.peer(e, peer: peer), tellPeer: false)
        }
    }

    private func complete(_ done: Done) {
        if machine.chain { channel.enqueue(.report(HopReport(outcomes: link?.outcomes ?? []))) }
        channel.enqueue(.done(done))
        flush()
        succeeded = true
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            let dirs = machine.entries.filter { !$0.isData }.count
            server.emit(.finished(.init(
                session: id, peer: peer, files: Int(done.files), directories: dirs, bytes: done.bytes,
                skippedBytes: skippedBytes, seconds: seconds, verified: machine.verify, digests: digests,
                engine: EngineReport(backend: loop.backend.kind, dataPath: dataPath, stats: loop.stats))))
        beginClose()
    }

    // MARK: Parallel streams

    /// Whether a lane hello naming `sessionID` from `host` joins this push.
    func takesLane(sessionID: [UInt8], host: String) -> Bool {
        owner == nil && !machine.isLane && closing == nil && machine.takesLanes && link == nil
            && machine.senderHello?.sessionID == sessionID && host == peerHost && laneSessions.count < Self.maxLanes
    }

    private func joinLane(_ sessionID: [UInt8]) {
        guard let push = server.laneOwner(sessionID: sessionID, host: peerHost) else {
            let why = "no push from \(peerHost) with that session is taking extra data streams here"
            fail(.refused(ErrorFrame(.refused, why), peer: peer), frame: ErrorFrame(.refused, why))
            return
        }
        owner = push
        push.laneSessions.append(self)
        joined = true
        server.laneJoined()
        server.logger.debug("session \(push.id): data stream \(push.laneSessions.count) from \(peer)")
        read()
    }

    /// This lane stops carrying data: the sender closed it (`why` nil) or
    /// it broke. A chunk it was carrying comes again on another stream.
    private func laneEnded(_ why: String?) {
        guard closing == nil, let owner else { return }
        if let p = payload {
            owner.machine.chunkLost(index: p.index, range: p.start..<p.start + p.length)
            payload = nil
        }
        if let why { server.logger.warning("session \(owner.id): a data stream from \(peer) broke (\(why)); its chunks go on the others") }
        // Whatever of ours still waits on the socket ends now.
        _ = shutdown(socket, CInt(SHUT_RDWR))
        closing = Closing(readDone: true, deadline: monotonicNanoseconds())
        owner.lastActivity = monotonicNanoseconds()
    }

    /// A lane ended; the push may be waiting for it to wind down.
    private func laneGone(_ lane: ReceiverSession) {
        laneSessions.removeAll { $0 === lane }
        finishIfClosed()
    }

    /// The trailer of entry `index` was waiting for a chunk that just
    /// landed: verify and commit now.
    private func finishDeferred(_ index: Int) {
        do throws(TransferError) {
            try finish(index)
        } catch {
            fail(error, tellPeer: true)
            return
        }
        let next = machine.finished(index: index, bytes: machine.entries[index].trailer!.size)
        if case .complete = next { act(next) }
    }

    /// A chunk sent again that had arrived whole: read it into the copy
    /// buffer and drop it.
    private func startDiscard(_ length: UInt32) {
        discarding = UInt64(length)
        pumpDiscard()
    }

    private var discarding: UInt64 = 0

    private func pumpDiscard() {
        guard discarding > 0 else {
            read()
            return
        }
        if copyBuffer == nil { copyBuffer = .allocate(byteCount: ReceiverConfig.copyBuffer, alignment: 4096) }
        let n = Int(min(discarding, UInt64(copyBuffer!.count)))
        loop.backend.queue(.recv(fd: socket, buffer: copyBuffer!.baseAddress!, length: n, flags: CInt(MSG_WAITALL)),
                           reg.userData(Tag.discardRecv.rawValue))
        inflight += 1
    }

    private func discardCompleted(_ result: Int32) {
        guard result > 0 else {
            if owner != nil {
                laneEnded(result < 0 ? IOError(result: result, "receive from", peer).description : "closed mid-chunk")
            } else {
                fail(.disconnected("closed in the middle of a chunk", peer: peer), tellPeer: false)
            }
            return
        }
        discarding -= min(discarding, UInt64(result))
        pumpDiscard()
    }

    // MARK: Relay

    private func startRelay(_ hops: [String]) {
        if !hops.isEmpty {
            let why: String? = server.code == nil
                ? "this receiver accepts anyone (--no-auth), so it does not relay: anyone could aim it at other hosts"
                : config.toStdout ? "this receiver writes to stdout and does not relay"
                : channel.cipher != nil ? "encrypted pushes are not relayed"
                : machine.parallel ? "a chain push travels on one stream; drop -P" : nil
            if let why {
                fail(.refused(ErrorFrame(.refused, why), peer: peer), frame: ErrorFrame(.refused, why))
                return
            }
            server.logger.info("session \(id): relaying to \(hops.joined(separator: ", "))")
            link = RelayLink(session: self, loop: loop, hops: hops, code: server.code!, verify: true,
                             timeoutSeconds: config.idleTimeoutSeconds)
            link!.start()
        }
        read()
    }

    /// Frames the next host needs, as they arrive (payload follows in the lanes).
    private func relayForward(_ f: Frame) {
        guard let link, !link.final else { return }
        switch f {
        case .manifest, .manifestEnd, .data, .fileEnd, .smallFiles, .end:
            link.forward(f)
        default:
            break
        }
    }

    /// The link's state moved: it is ready, writable, or final.
    func relayChanged() {
        guard let link, closing == nil else {
            finishIfClosed()
            return
        }
        if link.final, lanes?.relaying == true { lanes!.dropRelay() }
        if reviewWaitsForLink, link.final || link.state == .ready {
            reviewWaitsForLink = false
            sendAccept()
        }
        if payload != nil, lanes != nil, !lanes!.finished { pumpSplice() }
        if link.final, let done = heldDone {
            heldDone = nil
            complete(done)
        }
    }

    func relayActivity() { lastActivity = monotonicNanoseconds() }

    func relayNote(_ message: String) {
        server.logger.warning("session \(id): \(message)")
    }

    private func sendAccept() {
        let offered = held.sorted { $0.key < $1.key }.map {
            Accept.Have(fileID: machine.entries[$0.key].entry.fileID, bytes: $0.value.bytes, digest: $0.value.digest)
        }
        machine.accepted(offering: offered)
        channel.enqueue(.accept(Accept(have: offered)))
        flush()
        if offered.isEmpty { announceStart() }
        read()
    }

    // MARK: Review

    /// Checks every entry against the destination before any byte lands,
    /// and creates the directories. Throws the reason for refusing.
    private func review() throws(TransferError) {
        let dest = server.destination
        if config.toStdout {
            let data = machine.entries.filter(\.isData)
            guard data.count == 1, machine.entries.count == 1 else {
                throw refusal(.refused, "this receiver writes one file to stdout, but the push has \(machine.entries.count) entries")
            }
            meter.totalBytes = data[0].entry.kind == .file ? data[0].entry.size : nil
            return
        }
        var needed: UInt64 = 0
        // Directories found absent: nothing beneath them exists either, so
        // a fresh tree costs one lookup per top directory, not per entry.
        var absent = Set<PeerPath>()
        for e in machine.entries {
            let name = Escape.forDisplay(e.path.description)
            let existing: stat?
            if let parent = e.path.parent, absent.contains(parent) {
                existing = nil
            } else {
                do {
                    existing = try dest.lookup(e.path.components)
                } catch {
                    throw refusal(.refused, "'\(name)': \(error.operation) \(error.target ?? "")")
                }
            }
            if existing == nil, e.entry.kind == .directory { absent.insert(e.path) }
            if let st = existing {
                let isDir = st.st_mode & S_IFMT == S_IFDIR
                switch e.entry.kind {
                case .directory where !isDir:
                    throw refusal(.exists, "'\(name)' exists and is not a directory")
                case .file where isDir, .stream where isDir:
                    throw refusal(.exists, "'\(name)' exists as a directory")
                case .file, .stream:
                    if !config.overwrite {
                        throw refusal(.exists, "'\(name)' exists in \(dest.displayPath); the receiver keeps it (run ft recv with --overwrite to replace)")
                    }
                default:
                    break
                }
            }
            if e.entry.kind == .file { needed += e.entry.size }
        }
        try findPartials(absent: absent)
        needed -= held.values.reduce(0) { $0 + $1.bytes }
        let free: UInt64
        do { free = try dest.availableBytes() } catch { throw .io(error) }
        if needed > free {
            throw refusal(.noSpace, "push needs \(ByteCount.format(needed)) but \(dest.displayPath) has \(ByteCount.format(free)) free")
        }
        for (i, e) in machine.entries.enumerated() where e.entry.kind == .directory {
            do {
                let (_, created) = try dest.openDirectory(e.path.components[...], create: true)
                if created > 0 { createdDirectories.append(i) }
            } catch {
                throw .io(error)
            }
        }
        meter.totalBytes = machine.entries.contains { $0.entry.kind == .stream } ? nil : needed
    }

    /// Partials of earlier pushes of these entries, locked and hashed, to
    /// offer in `accept`. A partial another session holds means a
    /// concurrent push of the same entry: refused.
    /// `absent`: directories the review found missing.
    private func findPartials(absent: Set<PeerPath>) throws(TransferError) {
        // Each host of a chain gets the whole stream.
        guard !machine.chain else { return }
        // A parent that is not there holds no partials: asked once, not once
        // per file (a fresh tree of 10,000 files would walk 10,000 times).
        var missing = absent
        for (i, e) in machine.entries.enumerated() where e.entry.kind == .file && e.entry.size > 0 {
            if let parent = e.path.parent, missing.contains(parent) { continue }
            guard let dir = try? existingParent(of: e.path) else {
                if let parent = e.path.parent { missing.insert(parent) }
                continue
            }
            let p = Partial(e.entry)
            guard let prefix = p.storedPrefix(in: dir), prefix > 0, prefix <= e.entry.size,
                  let part = try? dir.open(p.partName, flags: O_RDWR) else { continue }
            let fd = part.release()
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw refusal(.busy, "another push of '\(Escape.forDisplay(e.path.description))' is writing into this directory right now")
            }
            var st = stat()
            guard fstat(fd, &st) == 0, UInt64(st.st_size) >= prefix else {
                close(fd)
                continue
            }
            let hasher = StreamHasher()
            do {
                try hasher.update(fd: fd, offset: 0, length: prefix)
            } catch {
                close(fd)
                continue
            }
            held[i] = HeldPrefix(fd: fd, bytes: prefix, digest: hasher.digest(), hasher: hasher)
        }
    }

    /// The parent directory of `path` if it exists, after sweeping stale
    /// partials from it (once per directory and session).
    private func existingParent(of path: PeerPath) throws(IOError) -> Directory {
        if let parent = path.parent, directoryCache[parent] == nil {
            let (d, _) = try server.destination.openDirectory(parent.components[...], create: false)
            directoryCache[parent] = d
        }
        let dir = path.parent.flatMap { directoryCache[$0] } ?? server.destination
        sweep(dir, key: path.parent?.description ?? "")
        return dir
    }

    private var swept = Set<String>()

    private func sweep(_ dir: Directory, key: String) {
        guard swept.insert(key).inserted else { return }
        let n = Partial.sweep(dir, olderThan: config.keepPartialHours * 3600)
        if n > 0 { server.logger.info("removed \(n) partial files older than \(Int(config.keepPartialHours)) h from \(dir.displayPath)") }
    }

    private func refusal(_ code: ErrorFrame.Code, _ message: String) -> TransferError {
        .refused(ErrorFrame(code, message), peer: peer)
    }

    private var skippedBytes: UInt64 = 0

    private func announceStart() {
        let files = machine.entries.filter(\.isData).count
        meter.totalBytes = meter.totalBytes.map { $0 - min($0, skippedBytes) }
        server.emit(.started(.init(
            session: id, peer: peer, files: files, directories: machine.entries.count - files,
            totalBytes: meter.totalBytes, skippedBytes: skippedBytes)))
    }

    // MARK: Payload

    private func sink(for index: Int) throws(TransferError) -> FileSink {
        if let owner { return try owner.sink(for: index) }
        if let s = sinks[index] { return s }
        let e = machine.entries[index]
        let display = Escape.forDisplay(e.path.description)
        let size: UInt64? = e.entry.kind == .file ? e.entry.size : nil
        let s: FileSink
        if config.toStdout {
            s = FileSink(stdoutFor: display, verify: machine.verify)
        } else {
            do {
                let dir = try parentDirectory(of: e.path)
                if e.entry.kind == .file {
                    s = try FileSink(directory: dir, entry: e.entry, display: display, verify: machine.verify,
                                     resume: held.removeValue(forKey: index))
                } else {
                    s = try FileSink(directory: dir, finalName: e.path.name, display: display, size: size, verify: machine.verify)
                }
            } catch {
                throw .io(error)
            }
        }
        sinks[index] = s
        return s
    }

    private func parentDirectory(of path: PeerPath) throws(IOError) -> Directory {
        guard let parent = path.parent else {
            sweep(server.destination, key: "")
            return server.destination
        }
        if let d = directoryCache[parent] { return d }
        let (d, _) = try server.destination.openDirectory(parent.components[...], create: true)
        if directoryCache.count > 1024 { directoryCache.removeAll() }
        directoryCache[parent] = d
        sweep(d, key: parent.description)
        return d
    }

    private func startPayload(index: Int, offset: UInt64, length: UInt32) {
        let sink: FileSink
        do throws(TransferError) {
            sink = try self.sink(for: index)
        } catch {
            fail(error, tellPeer: true)
            return
        }
        payload = Payload(index: index, sink: sink, length: UInt64(length), start: offset, offset: offset, remaining: UInt64(length))
        if length == 0 {
            payloadDone()
            return
        }
        if channel.cipher != nil {
            storeSealed(length)
        } else if link == nil, dataPath == ReceivePath.copy.rawValue {
            pumpCopy()
        } else {
            startSplice(payload!)
        }
    }

    /// Pipes per session for the splice path, and the user-data tags of
    /// their operations (the lane number is added to the tag).
    static let laneCount = 3
    static let fillTag: UInt8 = 64
    static let teeTag: UInt8 = 72
    static let sendTag: UInt8 = 80
    static let drainTag: UInt8 = 96

    /// Sends a new chunk into the splice lanes (pipes made on first use).
    private func startSplice(_ p: Payload) {
        if lanes == nil {
            do throws(IOError) {
                for _ in 0..<Self.laneCount { pipes.append(try Pipe(size: ReceiverConfig.pipeSize)) }
                if let link, !link.final {
                    for _ in 0..<Self.laneCount { relayPipes.append(try Pipe(size: ReceiverConfig.pipeSize)) }
                }
            } catch {
                fail(.io(error), tellPeer: true)
                return
            }
            lanes = SpliceLanes(lanes: pipes.count, capacity: (pipes + relayPipes).map(\.capacity).min()!,
                                relaying: !relayPipes.isEmpty)
        }
        lanes!.start(offset: p.offset, length: p.remaining)
        pumpSplice()
    }

    /// Queues what the lanes can do now. `settle`: end the payload if the
    /// lanes are done (false while the caller still has bytes to record).
    private func pumpSplice(settle: Bool = true) {
        guard let p = payload else { return }
        let file = p.sink!
        for action in lanes!.next(canSend: link?.idle ?? false) {
            switch action {
            case .tee(let lane, let length):
                loop.backend.queue(.tee(input: pipes[lane].readEnd, output: relayPipes[lane].writeEnd, length: length, flags: 0),
                                   reg.userData(Self.teeTag + UInt8(lane)))
                inflight += 1
            case .send(let lane, let length):
                loop.backend.queue(.splice(input: relayPipes[lane].readEnd, inputOffset: Op.noOffset, output: link!.socket,
                                           outputOffset: Op.noOffset, length: length, flags: 0),
                                   reg.userData(Self.sendTag + UInt8(lane)))
                inflight += 1
            case .fill(let lane, let length):
                loop.backend.queue(.splice(input: socket, inputOffset: Op.noOffset, output: pipes[lane].writeEnd,
                                           outputOffset: Op.noOffset, length: length, flags: 0),
                                   reg.userData(Self.fillTag + UInt8(lane)))
                inflight += 1
            case .drain(let lane, let length, let offset):
                loop.backend.queue(.splice(input: pipes[lane].readEnd, inputOffset: Op.noOffset, output: file.fd,
                                           outputOffset: file.isStdout ? Op.noOffset : Int64(offset), length: length, flags: 0),
                                   reg.userData(Self.drainTag + UInt8(lane)))
                inflight += 1
            }
        }
        if settle, lanes!.finished { payloadDone() }
    }

    private func laneCompleted(_ tag: UInt8, _ result: Int32) {
        guard var p = payload, lanes != nil else { return }
        let display = p.sink!.display
        if tag >= Self.teeTag, tag < Self.drainTag {
            relayCompleted(tag, result)
            return
        }
        if tag < Self.drainTag {
            let lane = Int(tag - Self.fillTag)
            guard result > 0 else {
                if owner != nil {
                    laneEnded(result == 0 ? "closed in the middle of a chunk of '\(display)'"
                                          : IOError(result: result, "splice from", peer).description)
                    return
                }
                let e: TransferError = result == 0
                    ? .disconnected("closed in the middle of a chunk of '\(display)'", peer: peer)
                    : .io(IOError(result: result, "splice from", peer))
                fail(e, tellPeer: result < 0)
                return
            }
            lanes!.filled(lane: lane, bytes: Int(result))
            p.remaining -= UInt64(result)
        } else {
            let lane = Int(tag - Self.drainTag)
            if result <= 0 {
                let e = result < 0 ? IOError(result: result, "write", display) : IOError(.noSpace, "write (no progress) to", display)
                fail(.io(e), tellPeer: true)
                return
            } else {
                // Queue the next splices before hashing, so the kernel
                // keeps moving bytes while this thread hashes.
                let stored = lanes!.drained(lane: lane, bytes: Int(result))
                p.offset = lanes!.nextOffset
                payload = p
                pumpSplice(settle: false)
                if !noteStored(p.sink!, stored) { return }
                advanceMeter(p.index, p.sink!, UInt64(result))
                // Only now: ending the payload may finish the file, which
                // needs these bytes hashed.
                if lanes!.finished { payloadDone() }
                return
            }
        }
        p.offset = lanes!.nextOffset
        payload = p
        pumpSplice()
    }

    /// A tee into, or a send out of, a lane's second pipe completed.
    private func relayCompleted(_ tag: UInt8, _ result: Int32) {
        let isTee = tag < Self.sendTag
        let lane = Int(tag - (isTee ? Self.teeTag : Self.sendTag))
        guard lanes!.relaying, let link, !link.final else {
            lanes!.abandoned(lane: lane)
            pumpSplice()
            return
        }
        var lost: String?
        if isTee {
            if result < 0 {
                lost = IOError(result: result, "tee into the relay pipe for", link.host).description
            } else if !lanes!.teed(lane: lane, bytes: Int(result)) {
                lost = "tee copied \(result) bytes, short of the lane's"
            }
        } else if result <= 0 {
            lost = result < 0 ? IOError(result: result, "send to", link.host).description : "send to \(link.host) made no progress"
        } else {
            lanes!.sent(lane: lane, bytes: Int(result))
        }
        if let lost {
            lanes!.abandoned(lane: lane)
            lanes!.dropRelay()
            relayNote("relay to \(link.host) failed: \(lost)")
            link.fail(lost)
        }
        pumpSplice()
    }

    /// recv into our buffer (hashed there while hot), then write to the file.
    private func pumpCopy() {
        guard var p = payload, p.inFlight == 0 else { return }
        guard p.remaining > 0 else {
            payloadDone()
            return
        }
        if copyBuffer == nil {
            copyBuffer = .allocate(byteCount: ReceiverConfig.copyBuffer, alignment: 4096)
        }
        let buf = copyBuffer!
        let file = p.sink!
        let n = Int(min(p.remaining, UInt64(buf.count)))
        p.piece = n
        p.written = 0
        p.source = UnsafeRawPointer(buf.baseAddress!)
        loop.backend.queue(.recv(fd: socket, buffer: buf.baseAddress!, length: n, flags: CInt(MSG_WAITALL)),
                           reg.userData(Tag.payloadRecv.rawValue), link: true)
        loop.backend.queue(.write(fd: file.fd, buffer: buf.baseAddress!, length: n,
                                  offset: file.isStdout ? Op.noOffset : Int64(p.offset)),
                           reg.userData(Tag.payloadWrite.rawValue))
        p.inFlight = 2
        inflight += 2
        payload = p
    }

    private func copyCompleted(_ tag: Tag, _ result: Int32) {
        guard var p = payload else { return }
        p.inFlight -= 1
        payload = p
        let file = p.sink!
        if tag == .payloadRecv {
            if Int(result) < p.piece, owner != nil {
                laneEnded(result < 0 ? IOError(result: result, "receive from", peer).description
                                     : "closed in the middle of a chunk of '\(file.display)'")
                return
            }
            if Int(result) < p.piece {
                let e: TransferError = result < 0
                    ? .io(IOError(result: result, "receive from", peer))
                    : .disconnected("closed in the middle of a chunk of '\(file.display)'", peer: peer)
                fail(e, tellPeer: result < 0)
                return
            }
            // The write of these bytes is running; both only read the buffer.
            file.hash(UnsafeRawBufferPointer(start: copyBuffer!.baseAddress, count: p.piece), at: p.offset)
        } else if result != -ECANCELED {
            if result <= 0 {
                let e = result < 0 ? IOError(result: result, "write", file.display) : IOError(.noSpace, "write (no progress) to", file.display)
                fail(.io(e), tellPeer: true)
                return
            }
            p.written += Int(result)
            if p.written < p.piece {
                // Pipes (stdout) take what fits; queue the rest of the buffer.
                let rest = p.piece - p.written
                loop.backend.queue(.write(fd: file.fd, buffer: p.source! + p.written, length: rest,
                                          offset: file.isStdout ? Op.noOffset : Int64(p.offset) + Int64(p.written)),
                                   reg.userData(Tag.payloadWrite.rawValue))
                p.inFlight += 1
                inflight += 1
                payload = p
                return
            }
            let stored = p.offset..<p.offset + UInt64(p.piece)
            p.offset += UInt64(p.piece)
            p.remaining -= UInt64(p.piece)
            payload = p
            if !noteStored(file, stored) { return }
            advanceMeter(p.index, file, UInt64(p.piece))
        }
        if p.inFlight == 0 { pumpCopy() }
    }

    /// A sealed data frame's payload is in the opened record: hash it there
    /// and write it; the record stays until the next read.
    private func storeSealed(_ length: UInt32) {
        guard var p = payload, let bytes = channel.takePayload(Int(length)) else {
            fail(.protocolViolation("a data frame's payload is not in its sealed record", peer: peer), tellPeer: true)
            return
        }
        let file = p.sink!
        file.hash(bytes, at: p.offset)
        p.piece = bytes.count
        p.written = 0
        p.source = bytes.baseAddress
        p.inFlight = 1
        inflight += 1
        loop.backend.queue(.write(fd: file.fd, buffer: bytes.baseAddress!, length: bytes.count,
                                  offset: file.isStdout ? Op.noOffset : Int64(p.offset)),
                           reg.userData(Tag.payloadWrite.rawValue))
        payload = p
    }

    /// Records stored bytes and hashes what became contiguous; false if
    /// hashing failed (the session is then failing).
    private func noteStored(_ sink: FileSink, _ range: Range<UInt64>) -> Bool {
        do throws(IOError) {
            try sink.didStore(range)
            return true
        } catch {
            fail(.io(error), tellPeer: true)
            return false
        }
    }

    private func payloadDone() {
        guard let p = payload else { return }
        payload = nil
        let push = owner ?? self
        if push.machine.parallel, case .finish(let i) = push.machine.chunkStored(index: p.index) {
            push.finishDeferred(i)
        }
        guard closing == nil else { return }
        read()
    }

    private func advanceMeter(_ index: Int, _ s: FileSink, _ n: UInt64) {
        if let owner {
            owner.advanceMeter(index, s, n)
            return
        }
        let e = machine.entries[index]
        if let ev = meter.advance(by: n, path: s.display, fileBytes: s.stored.total,
                                  fileSize: e.entry.kind == .file ? e.entry.size : nil) {
            server.emit(ev)
        }
    }

    // MARK: Finishing files

    private func finish(_ index: Int) throws(TransferError) {
        let e = machine.entries[index]
        let trailer = e.trailer!
        let s = try sink(for: index)
        if let digest = s.digest() {
            guard let expected = trailer.digest, digest.constantTimeEquals(expected) else {
                let theirs = trailer.digest?.hex ?? "none"
                throw refusal(.hashMismatch,
                    "'\(s.display)' failed verification: received bytes hash to \(digest.hex), the sender's hash is \(theirs); nothing was written under that name")
            }
        }
        do {
            try s.commit(entry: e.entry, overwrite: config.overwrite)
        } catch {
            let code: ErrorFrame.Code = error.errno == .fileExists ? .exists : .io
            throw refusal(code, error.description)
        }
        sinks[index] = nil
        let digest = s.digest()
        if let digest { digests.append((s.display, digest)) }
        channel.enqueue(.fileAck(FileAck(fileID: e.entry.fileID, status: .committed, digest: digest ?? .zero)))
        flush()
        if e.entry.size == 0 || e.entry.kind == .stream {
            _ = meter.advance(by: 0, path: s.display, fileBytes: trailer.size, fileSize: trailer.size)
        }
        server.emit(.fileDone(.init(session: id, path: s.display, bytes: trailer.size, digest: digest)))
    }

    /// A small file that came whole: verified in memory before any byte is
    /// written, then created complete under its name.
    private func storeWhole(_ a: SmallArrival) throws(TransferError) {
        let e = machine.entries[a.index]
        let display = Escape.forDisplay(e.path.description)
        var digest: Digest128?
        if machine.verify {
            let mine = a.file.bytes.withUnsafeBytes { StreamHasher.hash($0) }
            guard let theirs = a.file.digest, mine.constantTimeEquals(theirs) else {
                throw refusal(.hashMismatch, "'\(display)' failed verification: received bytes hash to \(mine.hex), the sender's hash is \(a.file.digest?.hex ?? "none"); nothing was written under that name")
            }
            digest = mine
        }
        do {
            let dir = try parentDirectory(of: e.path)
            try WholeFile.write(a.file.bytes, entry: e.entry, name: e.path.name, in: dir, overwrite: config.overwrite, display: display)
        } catch {
            throw refusal(error.errno == .fileExists ? .exists : .io, error.description)
        }
        if let digest { digests.append((display, digest)) }
        channel.enqueue(.fileAck(FileAck(fileID: e.entry.fileID, status: .committed, digest: digest ?? .zero)))
        if let ev = meter.advance(by: UInt64(a.file.bytes.count), path: display, fileBytes: UInt64(a.file.bytes.count),
                                  fileSize: e.entry.size) {
            server.emit(ev)
        }
        server.emit(.fileDone(.init(session: id, path: display, bytes: UInt64(a.file.bytes.count), digest: digest)))
    }

    /// Modes and mtimes of directories we created, deepest first, after
    /// their contents stopped changing them.
    private func applyDirectoryMetadata() {
        let ordered = createdDirectories.sorted {
            machine.entries[$0].path.components.count > machine.entries[$1].path.components.count
        }
        for i in ordered {
            let e = machine.entries[i]
            do {
                let (dir, _) = try server.destination.openDirectory(e.path.components[...], create: false)
                try Directory.applyMetadata(dir.fd, mode: e.entry.mode, mtimeSeconds: e.entry.mtimeSeconds,
                                            mtimeNanoseconds: e.entry.mtimeNanoseconds, path: dir.displayPath)
            } catch {
                server.logger.warning("could not set mode/mtime: \(error)")
            }
        }
    }

    // MARK: Ending

    /// Ends the session from outside (the receiver is stopping).
    func abort(_ reason: String) {
        // Not the peer's fault: what arrived stays for a resume.
        fail(.disconnected(reason, peer: peer), frame: ErrorFrame(.busy, reason))
        finishIfClosed()
    }

    private func fail(_ error: TransferError, tellPeer: Bool) {
        fail(error, frame: tellPeer ? error.frame : nil)
    }

    private func fail(_ error: TransferError, frame: ErrorFrame?) {
        guard closing == nil else { return }
        if let owner {
            // A lane's trouble (a bad chunk, a write that failed) is its
            // push's: that session fails and says why on its own connection.
            laneEnded(nil)
            owner.fail(error, frame: frame)
            return
        }
        failure = error.description
        // A dropped connection or a stall keeps what arrived for a resume;
        // a bad hash or a broken protocol does not (those bytes are suspect).
        switch error {
        case .refused, .protocolViolation, .verification: keepPartials = false
        default: keepPartials = true
        }
        // A chain host gets the whole stream again in a later pass, never a
        // resume; a kept (and still locked) partial would only make that
        // pass find the file busy.
        if machine.chain { keepPartials = false }
        // Settle partial files now; their fds stay valid for ops in flight.
        for s in sinks.values { s.discard(keep: keepPartials) }
        if let frame {
            channel.enqueue(.error(frame))
            flush()
        }
        server.emit(.failed(.init(session: id, peer: peer, message: error.description)))
        beginClose()
        // The next host's stream ends short: it fails too, and the sender
        // reaches it in a later pass.
        link?.fail("this host's own session failed: \(error.description)")
    }

    /// Flushes what is queued, half-closes, and waits (briefly) for the peer
    /// to close so our last frame is read rather than reset.
    private func beginClose() {
        // Reads in flight finish with the peer's close, or at the deadline.
        closing = Closing(deadline: monotonicNanoseconds() + 2_000_000_000)
        for lane in laneSessions where lane.closing == nil {
            // After `done` the sender closes its streams itself; closing
            // them first would look like breaks and send chunks again.
            lane.closing = Closing(shutWrite: succeeded, deadline: monotonicNanoseconds() + 2_000_000_000)
            lane.advanceClose()
        }
        advanceClose()
    }

    private func advanceClose() {
        guard var cl = closing else { return }
        if !cl.shutWrite, !channel.writing {
            _ = shutdown(socket, CInt(SHUT_WR))
            cl.shutWrite = true
        }
        if cl.shutWrite, !cl.readDone, inflight == 0 {
            // Drain until the peer closes.
            inflight += 1
            channel.readNext(loop, reg)
        }
        closing = cl
    }

    private func completeWhileClosing(_ tag: Tag, _ c: Completion) {
        switch tag {
        case .sendControl:
            // Frames queued behind the last write (a `done` after a file's
            // acknowledgement) still go before the half-close.
            if channel.onSent(c) == nil { flush() }
        case .readPrefix, .readBody:
            switch channel.onRead(c, loop, reg) {
            case .pending: inflight += 1
            case .frame: break
            case .closed, .failed: closing?.readDone = true
            }
        default:
            break
        }
        advanceClose()
        finishIfClosed()
    }

    private var ended = false

    private func finishIfClosed() {
        guard !ended, let cl = closing, cl.readDone || cl.deadline <= monotonicNanoseconds(), inflight == 0 else { return }
        // Lanes write into our sinks until they wind down.
        guard laneSessions.isEmpty else { return }
        if let link {
            // Its operations still use its buffers and sockets.
            guard link.final, link.inflight == 0 else { return }
            link.release()
            self.link = nil
        }
        for s in sinks.values { s.discard(keep: keepPartials) }
        sinks.removeAll()
        held.removeAll()
        ended = true
        loop.unregister(reg)
        if let owner {
            self.owner = nil
            owner.laneGone(self)
        }
        server.sessionEnded(self)
    }
}

