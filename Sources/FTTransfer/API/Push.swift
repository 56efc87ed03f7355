import FTEngine
import FTWire
import Logging
import Synchronization

/// What a finished push reports: counts, bytes, time, digests, and what
/// was skipped, patched or deleted.
public typealias PushSummary = ProgressEvent.Summary

/// Pushes files, directory trees or stdin (`"-"`) to an `ft recv` at
/// `destination`, as `ft send` does, and returns once the receiver has
/// confirmed every file.
///
/// - Parameters:
///   - paths: Files and directories; each arrives under its own name, a
///     directory with its whole tree.
///   - destination: `HOST[:PORT]` (port 7878 by default; IPv6 as
///     `[ADDR]:PORT`).
///   - code: The receiver's one-time code, or nil for a receiver that
///     accepts anyone.
///   - options: How the push runs; the defaults are `ft send`'s.
///   - logger: Where warnings go (an unreadable entry, a fallback to
///     poll); nowhere by default.
///   - progress: Called on the push's own thread: `.started`, then
///     `.progress` at most five times a second and `.fileDone` per file,
///     and last `.finished` or `.failed`.
/// - Returns: The summary the receiver confirmed.
/// - Throws: ``FTError``, with the text `ft send` would print. Cancelling
///   the task ends the push as a dropped connection would: no file gets
///   its final name unverified, what arrived stays as partials at the
///   receiver, and pushing the same paths again resumes.
public func push(
    _ paths: [String], to destination: String, code: String?, options: PushOptions = PushOptions(),
    logger: Logger? = nil, progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in }
) async throws(FTError) -> PushSummary {
    let config: SendConfig
    do throws(FTError) {
        config = try SendConfig(paths, to: destination, code: code, options: options)
    } catch {
        progress(.failed(.init(session: "", peer: destination, error: error)))
        throw error
    }
    return try await runPush(config, logger: logger ?? .silent, progress: progress)
}

/// Runs a push on its own thread; cancelling the task cancels the push.
package func runPush(_ config: SendConfig, logger: Logger, progress: @escaping @Sendable (ProgressEvent) -> Void) async throws(FTError) -> PushSummary {
    let control = PushControl()
    if config.code != nil { SessionMAC.prepare() }
    let result: Result<PushSummary, FTError> = await withTaskCancellationHandler {
        await onOwnThread("ft.push") {
            let sender: Sender
            do throws(TransferError) {
                sender = try Sender(config: config, logger: logger)
            } catch {
                progress(.failed(.init(session: "", peer: config.endpoint.description, error: FTError(error))))
                return .failure(FTError(error))
            }
            guard control.started(sender.canceller) else {
                let e = TransferError.cancelled(peer: config.endpoint.description)
                progress(.failed(.init(session: sender.sessionLabel, peer: config.endpoint.description, error: FTError(e))))
                return .failure(FTError(e))
            }
            defer { control.ended() }
            do throws(TransferError) {
                return .success(try sender.run(events: progress))
            } catch {
                return .failure(FTError(error))
            }
        }
    } onCancel: {
        control.cancel()
    }
    return try result.get()
}

/// Carries a cancellation to a push whose sender may not exist yet.
final class PushControl: Sendable {
    private enum State {
        case waiting(cancelled: Bool)
        case running(PushCanceller)
        case ended
    }
    private let state = Mutex(State.waiting(cancelled: false))

    /// The push is about to run; false if it was cancelled before.
    func started(_ canceller: PushCanceller) -> Bool {
        state.withLock {
            if case .waiting(true) = $0 { return false }
            $0 = .running(canceller)
            return true
        }
    }

    func ended() { state.withLock { $0 = .ended } }

    func cancel() {
        state.withLock {
            switch $0 {
            case .waiting: $0 = .waiting(cancelled: true)
            case .running(let c): c.cancel()
            case .ended: break
            }
        }
    }
}

extension SendConfig {
    /// The push the API's arguments describe, checked as `ft send` checks them.
    package init(_ paths: [String], to destination: String, code: String?, options: PushOptions) throws(FTError) {
        guard !paths.isEmpty else { throw .invalid("give at least one path to send (or - for stdin)") }
        if paths.filter({ $0 == "-" }).count > 1 { throw .invalid("stdin (-) can be sent once per push") }
        if let why = options.problem() { throw .invalid(why) }
        let endpoint: Endpoint
        do {
            endpoint = try Endpoint.parse(destination, defaultPort: Endpoint.ftPort)
        } catch {
            throw .invalid("destination '\(destination)': \(error)")
        }
        guard endpoint.host != nil else { throw .invalid("destination '\(destination)' has no host") }
        self.init(endpoint: endpoint, paths: paths, stdinName: options.stdinName, path: options.dataPath,
                  chunkSize: UInt32(options.chunkSize), verify: options.verify,
                  engine: EnginePreference(rawValue: options.engine.rawValue) ?? .auto,
                  connectTimeoutSeconds: options.connectTimeout.seconds, idleTimeoutSeconds: options.idleTimeout.seconds,
                  code: code)
        encrypt = options.encrypt
        ciphers = options.cipher.map { [$0] } ?? CipherSuite.offer
        streams = options.streams
        rateLimit = options.rateLimit
        sync = options.sync || options.checksum
        checksum = options.checksum
        delete = options.delete
        dryRun = options.dryRun
        links = options.links
        owner = options.keepOwner
        filter = options.filter
    }
}

extension Logger {
    /// Says nothing: the API's default when the caller gives no logger.
    static let silent = Logger(label: "ft") { _ in SwiftLogNoOpLogHandler() }
}
