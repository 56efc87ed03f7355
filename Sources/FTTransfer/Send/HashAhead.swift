import Dispatch
import FTEngine
import FTWire
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Hashes the sender's chunked files on a helper thread, in the order they
/// are sent, while the loop thread moves the same bytes with sendfile or
/// splice. Files are added as their batches are planned; each digest is
/// handed to `done` on the helper thread as it is ready (the sender posts
/// it to its loop), and a trailer whose digest is not ready yet waits for
/// it without blocking the loop.
///
/// The helper stays at most `window` bytes ahead of what was sent, so a
/// file bigger than memory is not read twice from disk. Holes of sparse
/// files are hashed as zeros, never read.
final class HashAhead: Sendable {
    struct File: Sendable {
        var id: UInt32
        var path: SourcePath
        var size: UInt64
        var sparse: Bool
    }

    private struct State {
        var queue: [File] = []
        var sent: UInt64 = 0
        var cancelled = false
    }

    typealias Done = @Sendable (_ id: UInt32, _ digest: Result<Digest128, IOError>) -> Void

    private let state = Mutex(State())
    private let progress = DispatchSemaphore(value: 0)
    private let more = DispatchSemaphore(value: 0)
    private let done: Done
    static let window: UInt64 = 512 << 20

    init(done: @escaping Done) {
        self.done = done
        DispatchQueue(label: "ft.hash-ahead").async { [self] in run() }
    }

    /// Files to hash next, in the order they will be sent.
    func add(_ files: [File]) {
        guard !files.isEmpty else { return }
        state.withLock { $0.queue.append(contentsOf: files) }
        more.signal()
    }

    /// Tells the helper how far the sender got, releasing its window.
    func sent(_ bytes: UInt64) {
        state.withLock { $0.sent += bytes }
        progress.signal()
    }

    func cancel() {
        state.withLock { $0.cancelled = true }
        progress.signal()
        more.signal()
    }

    private func run() {
        let hasher = StreamHasher()
        var hashed: UInt64 = 0
        while true {
            let (file, cancelled) = state.withLock { s -> (File?, Bool) in
                (s.queue.isEmpty ? nil : s.queue.removeFirst(), s.cancelled)
            }
            if cancelled { return }
            guard let f = file else {
                more.wait()
                continue
            }
            hasher.reset()
            let result: Result<Digest128, IOError>
            do {
                let fd = try SourceFile.openRegular(f.path).fd
                result = hashFile(fd, f, hasher, &hashed)
                close(fd)
            } catch {
                result = .failure(error)
            }
            if state.withLock({ $0.cancelled }) { return }
            done(f.id, result)
        }
    }

    private func hashFile(_ fd: CInt, _ f: File, _ hasher: StreamHasher, _ hashed: inout UInt64) -> Result<Digest128, IOError> {
        let pieces: [(Range<UInt64>, Bool)]
        if f.sparse {
            let (data, holes) = Extents.of(fd, size: f.size)
            pieces = (data.map { ($0, false) } + holes.map { ($0, true) }).sorted { $0.0.lowerBound < $1.0.lowerBound }
        } else {
            pieces = f.size == 0 ? [] : [(0..<f.size, false)]
        }
        let step: UInt64 = 4 << 20
        for (range, hole) in pieces {
            if hole {
                hasher.updateZeros(UInt64(range.count))
                continue
            }
            var at = range.lowerBound
            while at < range.upperBound {
                // Wait while too far ahead of the sender.
                while true {
                    let (sent, cancelled) = state.withLock { ($0.sent, $0.cancelled) }
                    if cancelled { return .failure(IOError(.canceled, "hash")) }
                    if hashed < sent + Self.window { break }
                    _ = progress.wait(timeout: .now() + .milliseconds(50))
                }
                let n = min(step, range.upperBound - at)
                do {
                    try hasher.update(fd: fd, offset: at, length: n)
                } catch {
                    return .failure(error)
                }
                at += n
                hashed += n
            }
        }
        return .success(hasher.digest())
    }
}
