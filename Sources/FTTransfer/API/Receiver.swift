import Dispatch
import FTEngine
import Logging
import Synchronization

/// A receiver, as `ft recv` runs one: it listens as soon as it is made,
/// serves pushes into a directory from ``start(progress:)`` (or
/// ``run(progress:)``, which also waits) until
/// ``stop()`` (or, with ``ReceiveOptions/once``, the end of one push), and
/// never writes outside that directory.
///
/// Every file lands under a temp name and gets its final name only after
/// its hash matches the sender's. What an interrupted push left is kept as
/// partials that the next push of the same files resumes.
public final class Receiver: Sendable {
    /// What the served pushes came to.
    public struct Outcome: Sendable {
        /// Pushes that passed the handshake.
        public var sessions = 0
        /// Pushes that completed, verified.
        public var succeeded = 0
        /// Why each of the others failed, as `ft recv` logs it.
        public var failures: [String] = []
        /// ``Receiver/stop()`` ended the serving.
        public var interrupted = false
    }

    /// The address it listens on, like `0.0.0.0:7878` or `[::1]:9000`.
    public var address: String { bound.description }
    /// The port it listens on (useful after listening on port 0).
    public var port: Int { Int(bound.port) }
    /// The code pushes must prove, or nil if it accepts anyone.
    public let code: String?

    package let bound: SocketAddress
    package let backend: BackendKind
    private let stopHandle: StopHandle
    private let thread: DriverThread

    /// Listens on `listen` (`[ADDR:]PORT`; port 0 picks a free one) and
    /// prepares to write into `directory`.
    ///
    /// - Parameters:
    ///   - directory: Where pushes land; it must exist and be writable.
    ///   - listen: `[ADDR:]PORT`, every interface on port 7878 by default;
    ///     IPv6 as `[ADDR]:PORT`.
    ///   - code: The one-time code senders must prove (make one with
    ///     ``makeCode()``), or nil to accept anyone.
    ///   - options: How it serves; the defaults are `ft recv`'s.
    ///   - logger: Where the receiver's log goes (each push, each
    ///     refusal); nowhere by default.
    /// - Throws: ``FTError`` with `ft recv`'s words: a directory this user
    ///   cannot write, an address in use, a malformed code.
    public convenience init(directory: String, listen: String = ":\(Endpoint.ftPort)", code: String?,
                options: ReceiveOptions = ReceiveOptions(), logger: Logger? = nil) throws(FTError) {
        let endpoint: Endpoint
        do {
            endpoint = try Endpoint.parse(listen, defaultPort: Endpoint.ftPort, allowPortZero: true)
        } catch {
            throw .invalid("listen address '\(listen)': \(error)")
        }
        if let why = options.problem() { throw .invalid(why) }
        var config = ReceiverConfig(
            listen: endpoint, directory: directory, once: options.once || options.toStdout, overwrite: options.overwrite,
            toStdout: options.toStdout, path: options.dataPath,
            engine: EnginePreference(rawValue: options.engine.rawValue) ?? .auto, maxSessions: options.maxSessions,
            idleTimeoutSeconds: options.idleTimeout.seconds, code: code)
        config.allowSensitive = options.allowSensitive
        config.requireEncryption = options.requireEncryption
        config.ciphers = options.cipher.map { [$0] } ?? CipherSuite.preference
        config.keepPartialHours = options.keepPartials.seconds / 3600
        config.links = options.links
        config.maxPending = options.maxPending
        config.allowDelete = options.allowDelete
        config.relayTo = options.relayTo.flatMap { try? RelayScope.parse($0).get() }
        try self.init(config: config, logger: logger ?? .silent)
    }

    /// From the command line's settings (`ft recv` builds one).
    package init(config: ReceiverConfig, logger: Logger) throws(FTError) {
        let (thread, ready) = DriverThread.start(config: config, logger: logger)
        switch ready {
        case .failure(let e): throw e
        case .success(let r):
            self.thread = thread
            bound = r.address
            backend = r.backend
            stopHandle = r.stop
            code = config.code
        }
    }

    deinit {
        // Never run: let the thread drop its driver and end.
        thread.abandon()
    }

    /// A fresh one-time code, as `ft recv` makes one: 12 characters of
    /// Crockford base32 in groups of four, such as `k7mq-2fxp-93rd`.
    public static func makeCode() -> String { AuthCode.generate() }

    /// Serves until ``stop()``, the task is cancelled, or (with
    /// ``ReceiveOptions/once``) the one push ended: ``start(progress:)``,
    /// then ``outcome()``. Call it once.
    ///
    /// - Parameter progress: Called on the receiver's thread with every
    ///   push's events; `session` tells concurrent pushes apart.
    public func run(progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }) async throws(FTError) -> Outcome {
        try start(progress: progress)
        return try await outcome()
    }

    /// Starts serving now, on the receiver's own thread, and returns at
    /// once: pushes are served even while no task of yours runs (Swift's
    /// cooperative threads may all be busy). Call it once.
    public func start(progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }) throws(FTError) {
        guard thread.start(progress) else { throw .invalid("this receiver was already started; make a new one") }
    }

    /// Waits until serving ends (``stop()``, or with ``ReceiveOptions/once``
    /// the one push) and says what the pushes came to. Cancelling the
    /// waiting task stops the receiver.
    public func outcome() async throws(FTError) -> Outcome {
        guard thread.started else { throw .invalid("this receiver was not started: call start(progress:) or run(progress:)") }
        let result = await withTaskCancellationHandler {
            await thread.finished()
        } onCancel: {
            stopHandle.stop()
        }
        return try result.get()
    }

    /// Ends ``run(progress:)`` from any thread: no new pushes are taken,
    /// running ones end with their partials kept. Before `run`, it makes
    /// `run` return at once.
    public func stop() { stopHandle.stop() }

    /// The eventfd that stops the receiver, for a signal handler (one
    /// `write` is async-signal-safe).
    package var stopDescriptor: CInt { stopHandle.descriptor }
}

/// The thread a receiver's driver lives on, from its making to its end
/// (its ring accepts submissions from that thread only).
private final class DriverThread: Sendable {
    struct Ready: Sendable {
        var address: SocketAddress
        var backend: BackendKind
        var stop: StopHandle
    }

    private enum Order {
        case waiting
        case start(@Sendable (ProgressEvent) -> Void)
        case abandon
        case taken
    }
    private let order = Mutex(Order.waiting)
    private let wake = DispatchSemaphore(value: 0)

    /// How serving ended, and who waits to hear it.
    private struct End {
        var result: Result<Receiver.Outcome, FTError>?
        var waiter: CheckedContinuation<Result<Receiver.Outcome, FTError>, Never>?
        var waited = false
    }
    private let end = Mutex(End())

    static func start(config: ReceiverConfig, logger: Logger) -> (DriverThread, Result<Ready, FTError>) {
        let t = DriverThread()
        let made = DispatchSemaphore(value: 0)
        let ready = Mutex<Result<Ready, FTError>?>(nil)
        DispatchQueue(label: "ft.recv").async {
            let driver: ReceiverDriver
            do throws(TransferError) {
                driver = try ReceiverDriver(config: config, logger: logger)
            } catch {
                ready.withLock { $0 = .failure(FTError(error)) }
                made.signal()
                return
            }
            ready.withLock { $0 = .success(Ready(address: driver.address, backend: driver.backend, stop: driver.stopHandle)) }
            made.signal()
            t.serve(driver)
        }
        made.wait()
        return (t, ready.withLock { $0! })
    }

    /// On the driver's thread: waits for `start` or `abandon`, then serves.
    private func serve(_ driver: ReceiverDriver) {
        wake.wait()
        let taken = order.withLock { o -> Order in
            defer { o = .taken }
            return o
        }
        guard case .start(let progress) = taken else { return }
        let result: Result<Receiver.Outcome, FTError>
        do throws(TransferError) {
            result = .success(try driver.run(events: progress))
        } catch {
            result = .failure(FTError(error))
        }
        let waiter = end.withLock { e -> CheckedContinuation<Result<Receiver.Outcome, FTError>, Never>? in
            e.result = result
            defer { e.waiter = nil }
            return e.waiter
        }
        waiter?.resume(returning: result)
    }

    var started: Bool {
        order.withLock {
            if case .waiting = $0 { return false }
            return true
        }
    }

    /// False if it was started before.
    func start(_ progress: @escaping @Sendable (ProgressEvent) -> Void) -> Bool {
        let accepted = order.withLock { o -> Bool in
            guard case .waiting = o else { return false }
            o = .start(progress)
            return true
        }
        if accepted { wake.signal() }
        return accepted
    }

    /// How serving ended, once it has.
    func finished() async -> Result<Receiver.Outcome, FTError> {
        await withCheckedContinuation { c in
            let now = end.withLock { e -> Result<Receiver.Outcome, FTError>? in
                if e.waited { return .failure(.invalid("someone already waits for this receiver's outcome")) }
                e.waited = true
                if let r = e.result { return r }
                e.waiter = c
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }

    func abandon() {
        let wasWaiting = order.withLock { o -> Bool in
            guard case .waiting = o else { return false }
            o = .abandon
            return true
        }
        if wasWaiting { wake.signal() }
    }
}
