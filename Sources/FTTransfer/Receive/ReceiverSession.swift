import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One accepted connection to the receiver: its handshake, then either a
/// push of its own (`PushSession`) or an extra data stream of another push.
/// Every connection runs on the receiver's one loop thread and none waits
/// on another: file work that could block runs on the offload thread.
final class ReceiverSession: LoopHandler {
    unowned let server: ReceiverDriver
    /// A random name until the push's hello, then the sender's session
    /// label (`PushLabel`), so both sides' events name the push alike.
    private(set) var id: String
    let peer: String
    /// The peer's address without the port, for per-host auth throttling.
    let peerHost: String
    let socket: OwnedSocket
    private(set) var reg: Registration!
    private(set) var channel: FrameChannel!
    var lastActivity = monotonicNanoseconds()
    let started = monotonicNanoseconds()

    enum Stage {
        case handshaking(ReceiverHandshake)
        /// A push of its own.
        case push(PushSession)
        /// An extra data stream of this push.
        case dataStream(PushSession)
    }

    private(set) var stage: Stage
    /// Where payloads after `data` headers go; made on the first one.
    private var intakeStore: PayloadIntake?
    /// The hello said this is a data stream (counted apart from pushes).
    private(set) var claimedDataStream = false
    /// Counted against the receiver's session limit (past the handshake).
    var admitted = false
    /// A data stream attached to its push.
    private(set) var joined = false

    /// A wrong proof's answer, held until `at` (AuthThrottle).
    private var delayedRefusal: (at: UInt64, error: TransferError, frame: ErrorFrame)?

    /// Not yet past the code's proof (or the push's first request), and
    /// not ending: what the receiver's pending slots count.
    var isPending: Bool { closing == nil && !admitted && !joined }

    /// Why the session ends; nil while it runs or when it succeeded.
    var failure: String?
    var succeeded = false
    private var closing: Closing?
    private var ended = false

    private struct Closing {
        var shutWrite = false
        var readDone = false
        var deadline: UInt64
    }

    init(server: ReceiverDriver, socket: CInt, peer: String, peerHost: String) {
        self.server = server
        self.socket = OwnedSocket(socket)
        self.peer = peer
        self.peerHost = peerHost
        self.id = randomHex(4)
        stage = .handshaking(ReceiverHandshake(settings: server.handshakeSettings, nonce: AuthCode.randomBytes(32)))
    }

    var loop: EventLoop { server.loop }
    var config: ReceiverConfig { server.config }

    func start() {
        reg = loop.register(self)
        channel = FrameChannel(fd: socket.fd, peer: peer, loop: loop, reg: reg)
        channel.bodyLimit = FrameChannel.handshakeBodyLimit
        loop.backend.adopt(socket: socket.fd)
        // The receiver speaks first: a sender writes nothing before this.
        channel.enqueue(ReceiverHandshake.banner)
        channel.flush()
        channel.read()
    }

    func read() {
        guard closing == nil else { return }
        channel.read()
    }

    /// The payload intake of this connection, made on first use.
    func intake(path: PayloadIntake.Path, relay: RelayLink?) -> PayloadIntake {
        if let i = intakeStore { return i }
        let i = PayloadIntake(socket: socket.fd, peer: peer, channel: channel, path: path, relay: relay, loop: loop, reg: reg)
        intakeStore = i
        return i
    }

    var inflight: Int { channel.inflight + (intakeStore?.inflight ?? 0) }
    var isClosing: Bool { closing != nil }

    // MARK: Completions

    func complete(_ c: Completion, on loop: EventLoop) {
        lastActivity = monotonicNanoseconds()
        guard let tag = c.tag else { return }
        switch tag.op {
        case .readPrefix, .readBody:
            guard let event = channel.onRead(c) else { break }
            guard closing == nil else {
                if case .frame = event {} else { closing?.readDone = true }
                break
            }
            switch event {
            case .frame(let f): received(f)
            case .closed: peerClosed(nil)
            case .failed(let e): peerClosed(e)
            }
        case .sendControl:
            let error = channel.onSent(c)
            if closing != nil {
                // Frames queued behind the last write (a `done` after a
                // file's acknowledgement) still go before the half-close.
                if error == nil { channel.flush() }
            } else if let error {
                fail(error, frame: nil)
            } else {
                channel.flush()
            }
        default:
            guard let intake = intakeStore else { break }
            let event = intake.complete(c)
            if closing == nil { intakeEvent(event) }
        }
        if closing != nil { advanceClose() }
        finishIfClosed()
    }

    func tick(now: UInt64, on loop: EventLoop) {
        if var cl = closing {
            if now >= cl.deadline, !cl.readDone {
                // The peer did not close after our last frame: cut it off.
                socket.shutdown()
                cl.readDone = true
                closing = cl
            }
            finishIfClosed()
            return
        }
        if let d = delayedRefusal {
            if now >= d.at {
                delayedRefusal = nil
                fail(d.error, frame: d.frame)
                finishIfClosed()
            }
            return
        }
        let quiet = Double(now &- lastActivity) / 1e9
        // The whole handshake, up to the push's first request, has one
        // deadline from the accept: trickling a byte now and then does not
        // keep a connection that never proved the code.
        let age = Double(now &- started) / 1e9
        let handshakeLimit = server.policy.timeoutSeconds(handshaking: true)
        switch stage {
        case .handshaking(let h):
            guard age > handshakeLimit else { return }
            let what = h.awaitingHello ? "sent no hello" : "did not prove the code"
            let e = TransferError.timeout("\(what) within \(Int(handshakeLimit)) s of connecting", peer: peer)
            fail(e, frame: e.frame)
        case .push(let push) where !admitted:
            guard age > handshakeLimit else { return }
            _ = push
            let e = TransferError.timeout("named no push within \(Int(handshakeLimit)) s of connecting", peer: peer)
            fail(e, frame: e.frame)
        case .dataStream(let push):
            // An idle stream is fine while its push moves; the push's own
            // check covers a stall (its streams' work keeps it alive).
            let limit = server.policy.timeoutSeconds(handshaking: false)
            if intakeStore?.busy == true, quiet > limit { dataStreamEnded("no progress for \(Int(limit)) s", push) }
        case .push(let push):
            push.tick(now)
            let limit = server.policy.idleLimitSeconds(active: server.activePushes)
            // Waiting on the next host of a chain is not idleness here: that
            // link gives up sooner (`RelayLink.silenceLimit`) and says why.
            guard quiet > limit, !push.waitsOnLink else { return }
            let full = limit < server.policy.timeoutSeconds(handshaking: false) ? " (the receiver is full, so idle pushes go sooner)" : ""
            let e = TransferError.timeout("no progress for \(Int(limit)) s while \(push.machine.phase)\(full)", peer: peer)
            fail(e, frame: e.frame)
        }
        finishIfClosed()
    }

    // MARK: Frames

    private func received(_ f: Frame) {
        switch stage {
        case .handshaking(var h):
            if case .hello(let hello) = f, hello.features.contains(.dataStream) { claimedDataStream = true }
            let step = h.receive(f)
            stage = .handshaking(h)
            for frame in step.send { channel.enqueue(frame) }
            channel.flush()
            handshakeStep(step.outcome)
        case .push(let push):
            push.received(f)
        case .dataStream(let push):
            guard case .data(let h) = f else {
                if case .error(let e) = f {
                    fail(.peer(e, peer: peer), frame: nil)
                } else {
                    let e = ErrorFrame(.protocolViolation, "unexpected \(f.type) frame on a data stream")
                    fail(.refused(e, peer: peer), frame: e)
                }
                return
            }
            push.dataStreamChunk(h, on: self)
        }
    }

    private func handshakeStep(_ outcome: ReceiverHandshake.Outcome) {
        switch outcome {
        case .waiting:
            read()
        case .refused(let e, let wrongCode):
            let local = wrongCode ? ErrorFrame(.auth, "wrong code: the sender's proof does not match this receiver's one-time code") : e
            let delay = wrongCode ? server.authFailed(peer: peerHost) : 0
            if delay > 0 {
                // Nothing more is read; the answer goes when the wait is over.
                delayedRefusal = (monotonicNanoseconds() + delay, .refused(local, peer: peer), e)
            } else {
                fail(.refused(local, peer: peer), frame: e)
            }
        case .peerFailed(let e):
            fail(.peer(e, peer: peer), frame: nil)
        case .established(.dataStream(let sessionID)):
            channel.bodyLimit = nil
            guard let push = server.pushTakingStreams(sessionID: sessionID, host: peerHost) else {
                let why = "no push from \(peerHost) with that session is taking extra data streams here"
                fail(.refused(ErrorFrame(.refused, why), peer: peer), frame: ErrorFrame(.refused, why))
                return
            }
            stage = .dataStream(push)
            push.attach(self)
            joined = true
            server.dataStreamJoined()
            server.logger.debug("session \(push.id): data stream \(push.streamCount) from \(peer)")
            read()
        case .established(.push(let version, let sender, let features, let keys)):
            channel.bodyLimit = nil
            id = PushLabel.of(sender.sessionID)
            if let keys {
                // Our proof left as it is; everything after it is sealed or tagged.
                channel.bind(keys, role: .receiver,
                             cipher: features.contains(.encrypt) ? Cipher.named(in: features).first : nil,
                             tags: .agreed(receiverHello: features))
            }
            let push = PushSession(connection: self, version: version, sender: sender, features: features)
            stage = .push(push)
            read()
        }
    }

    private func peerClosed(_ error: TransferError?) {
        switch stage {
        case .dataStream(let push):
            // The sender is done with this stream (or it broke).
            dataStreamEnded(error?.description, push)
        case .push(let push):
            if let error {
                fail(error, frame: error.frame)
            } else {
                fail(.disconnected("closed by the sender while \(push.machine.phase)", peer: peer), frame: nil)
            }
        case .handshaking:
            if let error { fail(error, frame: error.frame) } else {
                fail(.disconnected("closed by the sender during the handshake", peer: peer), frame: nil)
            }
        }
    }

    // MARK: Payloads

    /// Entry `index`'s chunk follows on this connection's socket.
    func store(_ p: Payload, path: PayloadIntake.Path, relay: RelayLink?) {
        intakeEvent(intake(path: path, relay: relay).start(p))
    }

    func discard(_ length: UInt32, path: PayloadIntake.Path) {
        intakeEvent(intake(path: path, relay: nil).discard(length))
    }

    /// The next host's socket changed: relayed payload may move on.
    func relayChanged() {
        guard closing == nil, let intake = intakeStore else { return }
        intakeEvent(intake.relayChanged())
    }

    private func intakeEvent(_ event: PayloadIntake.Event) {
        let push: PushSession
        switch stage {
        case .push(let p), .dataStream(let p): push = p
        case .handshaking: return
        }
        switch event {
        case .none:
            break
        case .stored(let n):
            if let p = intakeStore?.current { push.advanceMeter(p.id, p.sink, UInt64(n)) }
        case .finished(let p, let n):
            if let p, n > 0 { push.advanceMeter(p.id, p.sink, UInt64(n)) }
            if let p { push.payloadDone(p) }
            read()
        case .socketLost(let e, let tellPeer):
            if case .dataStream(let owner) = stage {
                if let p = intakeStore?.current { owner.chunkLost(p) }
                dataStreamEnded(e.description, owner)
            } else {
                fail(e, frame: tellPeer ? e.frame : nil)
            }
        case .failed(let e):
            fail(e, frame: e.frame)
        }
    }

    // MARK: Ending

    /// This data stream stops carrying data: the sender closed it (`why`
    /// nil) or it broke. A chunk it was carrying comes again on another.
    func dataStreamEnded(_ why: String?, _ push: PushSession) {
        guard closing == nil else { return }
        if let p = intakeStore?.current { push.chunkLost(p) }
        intakeStore?.abandon()
        if let why { server.logger.warning("session \(push.id): a data stream from \(peer) broke (\(why)); its chunks go on the others") }
        // Whatever of ours still waits on the socket ends now.
        socket.shutdown()
        closing = Closing(readDone: true, deadline: monotonicNanoseconds())
        push.connection.lastActivity = monotonicNanoseconds()
    }

    /// Ends the session from outside (the receiver is stopping).
    /// Dropped to make room for a newcomer before it proved the code: no
    /// event of its own (the receiver counts such drops and says so once
    /// in a while, so a flood does not flood the log too).
    func drop(_ reason: String) {
        silent = true
        abort(reason)
    }
    private var silent = false

    func abort(_ reason: String) {
        // Not the peer's fault: what arrived stays for a resume.
        fail(.disconnected(reason, peer: peer), frame: ErrorFrame(.busy, reason))
        finishIfClosed()
    }

    /// Ends the session with `error`, telling the peer `frame` if given.
    func fail(_ error: TransferError, frame: ErrorFrame?) {
        guard closing == nil else { return }
        switch stage {
        case .dataStream(let push):
            // A stream's trouble (a bad chunk, a write that failed) is its
            // push's: that session fails and says why on its own connection.
            dataStreamEnded(nil, push)
            push.fail(error, frame: frame)
            return
        case .push(let push):
            push.failing(error)
        case .handshaking:
            break
        }
        failure = error.description
        intakeStore?.abandon()
        if let frame {
            channel.enqueue(.error(frame))
            channel.flush()
        }
        if !silent { server.emit(.failed(.init(session: id, peer: peer, error: FTError(error)))) }
        beginClose()
    }

    /// Flushes what is queued, half-closes, and waits (briefly) for the peer
    /// to close so our last frame is read rather than reset. `shutWrite`:
    /// the write side is already closed.
    func beginClose(shutWrite: Bool = false) {
        guard closing == nil else { return }
        // Reads in flight finish with the peer's close, or at the deadline.
        closing = Closing(shutWrite: shutWrite, deadline: monotonicNanoseconds() + 2_000_000_000)
        if case .push(let push) = stage { push.closeStreams() }
        advanceClose()
    }

    private func advanceClose() {
        guard var cl = closing else { return }
        if !cl.shutWrite, !channel.writing, !channel.hasQueued {
            socket.shutdown(CInt(SHUT_WR))
            cl.shutWrite = true
        }
        closing = cl
        // Drain until the peer closes.
        if cl.shutWrite, !cl.readDone, inflight == 0 { channel.read() }
    }

    func finishIfClosed() {
        guard !ended, let cl = closing, cl.readDone || cl.deadline <= monotonicNanoseconds(), inflight == 0 else { return }
        switch stage {
        case .push(let push):
            // Streams write into its sinks until they wind down; the next
            // host's operations still use their buffers.
            guard push.mayEnd else { return }
            push.ended()
        case .dataStream(let push):
            push.detach(self)
        case .handshaking:
            break
        }
        ended = true
        loop.unregister(reg)
        server.sessionEnded(self)
    }
}
