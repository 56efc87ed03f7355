import FTEngine
import FTWire
import SystemPackage
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Stops a running receiver from another thread or a signal handler.
package struct StopHandle: Sendable {
    let fd: CInt
    /// The eventfd behind the handle, for a signal handler to write to.
    package var descriptor: CInt { fd }
    /// Async-signal-safe: one eventfd write.
    package func stop() {
        signalEventFD(fd)
    }
}

/// `ft recv`'s engine: listens, and serves many sessions at once on one ring, each
/// writing beneath the destination directory.
package final class ReceiverDriver {
    package let config: ReceiverConfig
    package let logger: Logger
    package let address: SocketAddress
    let loop: EventLoop
    let offload: Offload
    let destination: Directory
    /// The rules that depend on this receiver's settings.
    let policy: ReceiverPolicy
    let handshakeSettings: ReceiverHandshake.Settings
    private let acceptor: Acceptor
    private let stopSignal: StopSignal
    private var sessions: [ObjectIdentifier: ReceiverSession] = [:]
    private var events: ProgressHandler = { _ in }
    private var stopping = false
    /// Stages (`Stage`) not yet published or given up: a stopping
    /// receiver waits for them, as their last jobs come back.
    var stagesOpen = 0
    /// Where what stages leave behind is removed (`Stage.publish`): not a
    /// session's own queue, as the session may be gone by then.
    private lazy var leftovers = offload.serialQueue("ft.offload.leftovers")

    /// Runs a stage's removal `job` on the leftovers' queue, logs what it
    /// could not remove, then `then` on the loop.
    func removeLeftovers(_ job: @escaping @Sendable () -> String?, then: @escaping () -> Void) {
        offload.run(on: leftovers, job) { [weak self] problem in
            if let problem { self?.logger.warning("\(problem)") }
            then()
        }
    }
    private var outcome = Outcome()
    /// Normalised one-time code, or nil when anyone is accepted.
    let code: [UInt8]?
    /// Wrong codes per host, to slow down guessing.
    private var throttle = AuthThrottle()

    package typealias Outcome = Receiver.Outcome

    package init(config: ReceiverConfig, logger: Logger) throws(TransferError) {
        self.config = config
        self.logger = logger
        if let text = config.code {
            guard let c = AuthCode.normalize(text) else { throw .source("'\(text)' is not a code like k7mq-2fxp-93rd") }
            code = c
        } else {
            code = nil
        }
        do throws(IOError) {
            destination = try Directory.open(config.directory)
            // Found now, not at the first push: a directory we cannot
            // write into (permissions, a read-only mount).
            if !config.toStdout, faccessat(destination.fd, ".", W_OK | X_OK, AT_EACCESS) != 0 {
                throw IOError(Errno(rawValue: errno), "cannot write into", config.directory + " (pick a directory this user can write, or fix its permissions)")
            }
            let backend = try Engine.makeBackend(config.engine, logger: logger)
            loop = try EventLoop(backend: backend, logger: logger)
            offload = try Offload(loop: loop)
            acceptor = try Acceptor(config.listen, loop: loop)
            stopSignal = try StopSignal(loop: loop)
        } catch {
            throw .io(error)
        }
        address = acceptor.address
        var policy = ReceiverPolicy()
        policy.overwrite = config.overwrite
        policy.toStdout = config.toStdout
        policy.hasCode = code != nil
        policy.handshakeTimeoutSeconds = config.handshakeTimeoutSeconds
        policy.idleTimeoutSeconds = config.idleTimeoutSeconds
        policy.maxSessions = config.maxSessions
        policy.destination = destination.displayPath
        self.policy = policy
        handshakeSettings = ReceiverHandshake.Settings(code: code, requireEncryption: config.requireEncryption,
                                                       toStdout: config.toStdout, ciphers: config.ciphers)
    }

    /// A handle that makes `run` wind down and return, from any thread.
    package var stopHandle: StopHandle { StopHandle(fd: stopSignal.descriptor) }

    package var backend: BackendKind { loop.backend.kind }

    /// Serves until stopped (or, with `once`, until the first session ends).
    package func run(events: @escaping ProgressHandler) throws(TransferError) -> Outcome {
        self.events = events
        if config.code != nil { SessionMAC.prepare() }
        ResourceLimits.raiseOpenFiles()
        offload.arm()
        acceptor.start(onAccept: { [unowned self] in accepted($0) },
                       onError: { [unowned self] in logger.error("\($0)") })
        stopSignal.start { [unowned self] in
            // Interrupted: end every session; their temp files are removed.
            outcome.interrupted = true
            beginStopping()
            for s in sessions.values { s.abort("the receiver was interrupted") }
        }
        do {
            try loop.run { stopping && sessions.isEmpty && stagesOpen == 0 }
        } catch {
            throw .io(error)
        }
        logger.debug("longest loop stall: \(loop.longestBusy / 1_000_000) ms")
        return outcome
    }

    private func accepted(_ result: Int32) {
        let address = Socket.peerAddress(result)
        let peer = address?.description ?? "unknown peer"
        let host = address?.host ?? "unknown"
        if stopping {
            let why = "the receiver is shutting down"
            let bytes = FrameCodec.encode(.error(ErrorFrame(.busy, why)))
            _ = bytes.withUnsafeBytes { send(result, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            close(result)
            logger.warning("turned away \(peer): \(why)")
            return
        }
        makeRoomForPending(from: host)
        let s = ReceiverSession(server: self, socket: result, peer: peer, peerHost: host)
        sessions[ObjectIdentifier(s)] = s
        s.start()
    }

    /// Connections that have not proved the code yet are bounded (each
    /// holds a few KiB). The newcomer is always taken: when its host holds
    /// its share of the slots, that host's oldest goes; when all are taken,
    /// the oldest of all goes. A stranger who fills the slots therefore
    /// cannot keep out a sender, who proves the code within milliseconds.
    private func makeRoomForPending(from host: String) {
        let pending = sessions.count - activePushes - joinedStreams
        let share = max(8, config.maxPending / 8)
        guard pending >= share else { return }
        var oldest: ReceiverSession?, oldestOfHost: ReceiverSession?, ofHost = 0
        for s in sessions.values where s.isPending {
            if oldest.map({ s.started < $0.started }) ?? true { oldest = s }
            if s.peerHost == host {
                ofHost += 1
                if oldestOfHost.map({ s.started < $0.started }) ?? true { oldestOfHost = s }
            }
        }
        let victim = ofHost >= share ? oldestOfHost : pending >= config.maxPending ? oldest : nil
        guard let victim else { return }
        victim.drop("the receiver is full of connections that have not proved the code; this one waited longest")
        dropped += 1
        let now = monotonicNanoseconds()
        if now &- droppedSaidAt > 10_000_000_000 {
            logger.warning("dropped \(dropped) connections that had not proved the code, to make room for newer ones (the newest from \(host)); is someone flooding this port?")
            dropped = 0
            droppedSaidAt = now
        }
    }
    private var dropped = 0
    private var droppedSaidAt: UInt64 = 0

    /// `--once` (and `--stdout`): the push being served. Only a push that
    /// passed the handshake claims the receiver, so a port scan, a bare
    /// connect or a wrong code cannot end it before the real sender comes.
    private var claimed: ObjectIdentifier?
    private var single: Bool { config.once || config.toStdout }
    private var joinedStreams = 0

    /// The push a data-stream hello names, if it came from the same host
    /// and is taking streams.
    func pushTakingStreams(sessionID: [UInt8], host: String) -> PushSession? {
        for s in sessions.values {
            if case .push(let p) = s.stage, p.takesDataStream(sessionID: sessionID, host: host) { return p }
        }
        return nil
    }

    func dataStreamJoined() { joinedStreams += 1 }

    private func beginStopping() {
        guard !stopping else { return }
        stopping = true
        acceptor.stop()
    }

    func emit(_ e: ProgressEvent) { events(e) }

    /// Pushes past the handshake (counted against `maxSessions`).
    private(set) var activePushes = 0

    /// A push passed its handshake and wants to transfer (the policy
    /// checked the limit). Nil if admitted, else why not.
    func admit(_ s: ReceiverSession) -> ErrorFrame? {
        if single {
            guard claimed == nil else {
                return ErrorFrame(.busy, "this receiver serves one push (--once) and it is under way; try again when it is done")
            }
            claimed = ObjectIdentifier(s)
        }
        activePushes += 1
        s.admitted = true
        return nil
    }

    /// A wrong code from `host`: how long its answer waits, in nanoseconds.
    /// Wrong guesses get slow; a right proof is never refused for them.
    func authFailed(peer host: String) -> UInt64 {
        let now = monotonicNanoseconds()
        let n = throttle.failed(host, now: now)
        let wait = min(throttle.waitSeconds(host, now: now), Int(policy.timeoutSeconds(handshaking: true)))
        logger.warning("wrong code from \(host) (\(n) so far)\(wait > 0 ? "; answering it in \(wait) s" : "")")
        return UInt64(wait) * 1_000_000_000
    }

    func sessionEnded(_ s: ReceiverSession) {
        sessions[ObjectIdentifier(s)] = nil
        if s.admitted { activePushes -= 1 }
        if s.joined { joinedStreams -= 1 }
        if s.claimedDataStream { return }
        // --once: connections that never became the push do not count.
        if single, claimed != ObjectIdentifier(s) { return }
        outcome.sessions += 1
        if single {
            beginStopping()
            // Connections that came after the one push are not served.
            for other in sessions.values { other.abort("the receiver served its one push (--once)") }
        }
        if s.succeeded {
            outcome.succeeded += 1
        } else {
            outcome.failures.append(s.failure ?? "session ended early")
        }
    }
}
