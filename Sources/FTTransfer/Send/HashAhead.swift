import Dispatch
import FTEngine
import FTWire
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Hashes the sender's files on a helper thread, in push order, while the
/// loop thread moves the same bytes with sendfile or splice. Each digest is
/// handed to `done` on the helper thread as it is ready (the sender posts it
/// to its loop); a trailer whose digest is not ready yet waits for it
/// without blocking the loop.
///
/// The helper stays at most `window` bytes ahead of what was sent, so a
/// file bigger than memory is not read twice from disk.
final class HashAhead: Sendable {
    private struct State {
        var sent: UInt64 = 0
        var cancelled = false
    }

    typealias Done = @Sendable (_ index: Int, _ digest: Result<Digest128, IOError>) -> Void

    private let state = Mutex(State())
    private let progress = DispatchSemaphore(value: 0)
    private let done: Done
    static let window: UInt64 = 512 << 20

    /// `files`: (index, path, size) in the order they will be sent.
    init(files: [(index: Int, path: String, size: UInt64)], done: @escaping Done) {
        self.done = done
        let thread = DispatchQueue(label: "ft.hash-ahead")
        thread.async { [self] in run(files) }
    }

    /// Tells the helper how far the sender got, releasing its window.
    func sent(_ bytes: UInt64) {
        state.withLock { $0.sent += bytes }
        progress.signal()
    }

    func cancel() {
        state.withLock { $0.cancelled = true }
        progress.signal()
    }

    private func run(_ files: [(index: Int, path: String, size: UInt64)]) {
        let hasher = StreamHasher()
        var hashed: UInt64 = 0
        for f in files {
            hasher.reset()
            let result: Result<Digest128, IOError>
            let fd = open(f.path, O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                result = .failure(IOError(Errno(rawValue: errno), "open for hashing", f.path))
            } else {
                result = hashFile(fd, f.size, hasher, &hashed)
                close(fd)
            }
            if state.withLock({ $0.cancelled }) { return }
            done(f.index, result)
        }
    }

    private func hashFile(_ fd: CInt, _ size: UInt64, _ hasher: StreamHasher, _ hashed: inout UInt64) -> Result<Digest128, IOError> {
        var at: UInt64 = 0
        let step: UInt64 = 4 << 20
        while at < size {
            // Wait while too far ahead of the sender.
            while true {
                let (sent, cancelled) = state.withLock { ($0.sent, $0.cancelled) }
                if cancelled { return .failure(IOError(.canceled, "hash")) }
                if hashed < sent + Self.window { break }
                _ = progress.wait(timeout: .now() + .milliseconds(50))
            }
            let n = min(step, size - at)
            do {
                try hasher.update(fd: fd, offset: at, length: n)
            } catch {
                return .failure(error)
            }
            at += n
            hashed += n
        }
        return .success(hasher.digest())
    }
}
