import Foundation
import Testing
import Logging
import Synchronization
import FTEngine
import FTTransfer
import FTWire

/// A receiver on its own thread, as `ft recv` runs it, for in-process tests.
final class ReceiverThread: @unchecked Sendable {
    struct State {
        var address: SocketAddress?
        var stop: StopHandle?
        var startError: String?
        var outcome: Receiver.Outcome?
        var events: [String] = []
    }

    final class Shared: Sendable {
        let state = Mutex(State())
    }

    private let shared = Shared()
    private let done = DispatchSemaphore(value: 0)

    init(_ config: ReceiverConfig) {
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [shared, done] in
            var logger = Logger(label: "test.recv")
            logger.logLevel = .warning
            do {
                let r = try Receiver(config: config, logger: logger)
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

    var port: UInt16 { shared.state.withLock { $0.address!.port } }
    var startError: String? { shared.state.withLock { $0.startError } }

    /// Waits for `run` to return (at most `seconds`), stopping it if asked.
    func finish(stop: Bool = false, seconds: Double = 30) -> Receiver.Outcome? {
        if stop { shared.state.withLock { $0.stop?.stop() } }
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return shared.state.withLock { $0.outcome }
    }

    var failures: [String] { shared.state.withLock { $0.events.filter { $0.hasPrefix("failed") } } }
}

/// A fresh directory under /tmp, removed by `cleanup`.
struct TempDir {
    let path: String

    init(_ tag: String = "ft") {
        var template = Array("/tmp/\(tag)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("mkdtemp failed") }
        path = String(cString: p)
    }

    func sub(_ name: String) -> String {
        let p = path + "/" + name
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Deterministic pseudo-random bytes (xorshift), so content bugs show.
func patternBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        var v = x
        for _ in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
            i += 1
        }
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

func readFile(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

func quietLogger() -> Logger {
    var l = Logger(label: "test")
    l.logLevel = .error
    return l
}

/// Pushes `paths` to a fresh once-receiver writing into `dest`.
@discardableResult
func push(
    _ paths: [String], to dest: String, path: SendPath = .sendfile, receive: ReceivePath = .splice,
    engine: EnginePreference = .auto, overwrite: Bool = false, verify: Bool = true, chunk: UInt32 = 4 << 20
) throws -> (ProgressEvent.Summary, Receiver.Outcome?) {
    let recv = ReceiverThread(ReceiverConfig(
        listen: Endpoint(host: "127.0.0.1", port: 0), directory: dest, once: true, overwrite: overwrite,
        path: receive, engine: engine, code: "k7mq-2fxp-93rd"))
    if let e = recv.startError { throw TransferError.source(e) }
    let sender = try Sender(
        config: SendConfig(endpoint: Endpoint(host: "127.0.0.1", port: recv.port), paths: paths, path: path,
                           chunkSize: chunk, verify: verify, engine: engine, code: "k7mq-2fxp-93rd"),
        logger: quietLogger())
    do {
        let summary = try sender.run { _ in }
        return (summary, recv.finish())
    } catch {
        _ = recv.finish()
        throw error
    }
}


/// Byte equality without handing megabytes to the test library, which
/// would print and diff them: reports sizes and the first difference.
func expectSame(_ a: [UInt8]?, _ b: [UInt8]?, _ what: String = "bytes", sourceLocation: SourceLocation = #_sourceLocation) {
    guard a != b else { return }
    guard let a, let b else {
        Issue.record("\(what): one side is missing (\(a?.count ?? -1) vs \(b?.count ?? -1) bytes)", sourceLocation: sourceLocation)
        return
    }
    let first = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
    Issue.record("\(what): \(a.count) vs \(b.count) bytes, first difference at byte \(first)", sourceLocation: sourceLocation)
}
