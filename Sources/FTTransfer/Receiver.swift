import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Stops a running receiver from another thread or a signal handler.
public struct StopHandle: Sendable {
    let fd: CInt
    /// The eventfd behind the handle, for a signal handler to write to.
    public var descriptor: CInt { fd }
    /// Async-signal-safe: one eventfd write.
    public func stop() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }
}

/// `ft recv`: listens, and serves many sessions at once on one ring, each
/// writing beneath the destination directory.
public final class Receiver {
    public let config: ReceiverConfig
    public let logger: Logger
    public let address: SocketAddress
    let loop: EventLoop
    let destination: Directory
    private let acceptor: Acceptor
    private let stopSignal: StopSignal
    private var sessions: [ObjectIdentifier: ReceiverSession] = [:]
    private var events: ProgressHandler = { _ in }
    private var stopping = false
    private var outcome = Outcome()

    public struct Outcome: Sendable {
        public var sessions = 0
        public var succeeded = 0
        public var failures: [String] = []
        public var interrupted = false
    }

    public init(config: ReceiverConfig, logger: Logger) throws(TransferError) {
        self.config = config
        self.logger = logger
        do {
            destination = try Directory.open(config.directory)
            let backend = try Engine.makeBackend(config.engine, logger: logger)
            loop = try EventLoop(backend: backend, logger: logger)
            acceptor = try Acceptor(config.listen, loop: loop)
            stopSignal = try StopSignal(loop: loop)
        } catch {
            throw .io(error)
        }
        address = acceptor.address
    }

    /// A handle that makes `run` wind down and return, from any thread.
    public var stopHandle: StopHandle { StopHandle(fd: stopSignal.descriptor) }

    public var backend: BackendKind { loop.backend.kind }

    /// Serves until stopped (or, with `once`, until the first session ends).
    public func run(events: @escaping ProgressHandler) throws(TransferError) -> Outcome {
        self.events = events
        acceptor.start(onAccept: { [unowned self] in accepted($0) },
                       onError: { [unowned self] in logger.error("\($0)") })
        stopSignal.start { [unowned self] in
            // Interrupted: end every session; their temp files are removed.
            outcome.interrupted = true
            beginStopping()
            for s in sessions.values { s.abort("the receiver was interrupted") }
        }
        do {
            try loop.run { stopping && sessions.isEmpty }
        } catch {
            throw .io(error)
        }
        return outcome
    }

    private func accepted(_ result: Int32) {
        let peer = Socket.peerAddress(result)?.description ?? "unknown peer"
        if stopping || sessions.count >= config.maxSessions {
            let why = stopping ? "the receiver is shutting down" : "the receiver is serving \(sessions.count) sessions, its limit; try again later"
            let bytes = FrameCodec.encode(.error(ErrorFrame(.busy, why)))
            _ = bytes.withUnsafeBytes { send(result, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            close(result)
            logger.warning("turned away \(peer): \(why)")
            return
        }
        let s = ReceiverSession(server: self, socket: result, peer: peer)
        sessions[ObjectIdentifier(s)] = s
        outcome.sessions += 1
        s.start()
        if config.once || config.toStdout { beginStopping() }
    }

    private func beginStopping() {
        guard !stopping else { return }
        stopping = true
        acceptor.stop()
    }

    func emit(_ e: ProgressEvent) { events(e) }

    func sessionEnded(_ s: ReceiverSession) {
        sessions[ObjectIdentifier(s)] = nil
        if s.succeeded {
            outcome.succeeded += 1
        } else {
            outcome.failures.append(s.failure ?? "session ended early")
        }
    }
}
