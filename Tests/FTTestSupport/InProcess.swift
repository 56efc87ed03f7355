import Foundation
import Testing
import Logging
import Synchronization
import FTEngine
import FTTransfer
import FTWire

/// A receiver on its own thread, as `ft recv` runs it, for in-process tests.
package final class ReceiverThread: @unchecked Sendable {
    package struct State {
        var address: SocketAddress?
        var stop: StopHandle?
        var startError: String?
        var outcome: Receiver.Outcome?
        var events: [String] = []
    }

    package final class Shared: Sendable {
        let state = Mutex(State())
    }

    private let shared = Shared()
    private let done = DispatchSemaphore(value: 0)

    package init(_ config: ReceiverConfig) {
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [shared, done] in
            var logger = Logger(label: "test.recv")
            logger.logLevel = .warning
            do {
                let r = try ReceiverDriver(config: config, logger: logger)
                shared.state.withLock {
                    $0.address = r.address
                    $0.stop = r.stopHandle
                }
                ready.signal()
                let outcome = try r.run { ev in
                    if case .failed(let f) = ev { shared.state.withLock { $0.events.append("failed: \(f.message)") } }
                    if case .fileDone(let f) = ev { shared.state.withLock { $0.events.append("file: \(f.path)") } }
                }
                shared.state.withLock { $0.outcome = outcome }
            } catch {
                shared.state.withLock { $0.startError = "\(error)" }
                ready.signal()
            }
            done.signal()
        }
        thread.start()
        ready.wait()
    }

    package var port: UInt16 { shared.state.withLock { $0.address!.port } }
    package var startError: String? { shared.state.withLock { $0.startError } }

    /// Waits for `run` to return (at most `seconds`), stopping it if asked.
    package func finish(stop: Bool = false, seconds: Double = 30) -> Receiver.Outcome? {
        if stop { shared.state.withLock { $0.stop?.stop() } }
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return shared.state.withLock { $0.outcome }
    }

    package var failures: [String] { shared.state.withLock { $0.events.filter { $0.hasPrefix("failed") } } }
}

package func quietLogger() -> Logger {
    var l = Logger(label: "test")
    l.logLevel = .error
    return l
}

/// Pushes `paths` to a fresh once-receiver writing into `dest`.
@discardableResult
package func push(
    _ paths: [String], to dest: String, path: SendPath = .sendfile, receive: ReceivePath = .splice,
    engine: EnginePreference = .auto, overwrite: Bool = false, verify: Bool = true, chunk: UInt32 = 4 << 20,
    batchSmallFiles: Bool = true
) throws -> (ProgressEvent.Summary, Receiver.Outcome?) {
    let recv = ReceiverThread(ReceiverConfig(
        listen: Endpoint(host: "127.0.0.1", port: 0), directory: dest, once: true, overwrite: overwrite,
        path: receive, engine: engine, code: "k7mq-2fxp-93rd"))
    if let e = recv.startError { throw TransferError.source(e) }
    var config = SendConfig(endpoint: Endpoint(host: "127.0.0.1", port: recv.port), paths: paths, path: path,
                            chunkSize: chunk, verify: verify, engine: engine, code: "k7mq-2fxp-93rd")
    config.batchSmallFiles = batchSmallFiles
    let sender = try Sender(config: config, logger: quietLogger())
    do {
        let summary = try sender.run { _ in }
        return (summary, recv.finish())
    } catch {
        _ = recv.finish()
        throw error
    }
}


