import FTEngine
import FTWire

/// What a push reports while it runs. Sender and receiver emit the same
/// events; `session` tells concurrent receiver sessions apart.
public enum ProgressEvent: Sendable {
    case started(Started)
    case progress(Snapshot)
    case fileDone(FileResult)
    case finished(Summary)
    case failed(Failure)

    public struct Started: Sendable {
        public var session: String
        public var peer: String
        public var files: Int
        public var directories: Int
        /// Nil when a stream of unknown length is part of the push.
        public var totalBytes: UInt64?
        /// Bytes the receiver already held (resume), not sent again.
        public var skippedBytes: UInt64
    }

    public struct Snapshot: Sendable {
        public var session: String
        /// Current file (escaped for display).
        public var path: String
        public var fileBytes: UInt64
        public var fileSize: UInt64?
        public var bytes: UInt64
        public var totalBytes: UInt64?
        /// Bytes per second over the last few seconds.
        public var rate: Double
        public var elapsed: Double

        /// Seconds left at the current rate, when it can be known.
        public var eta: Double? {
            guard let total = totalBytes, rate > 0, total >= bytes else { return nil }
            return Double(total - bytes) / rate
        }
    }

    public struct FileResult: Sendable {
        public var session: String
        public var path: String
        public var bytes: UInt64
        /// The digest both sides agreed on; nil with verification off.
        public var digest: Digest128?
    }

    public struct Summary: Sendable {
        public static let digestCap = 1000
        public var session: String
        public var peer: String
        public var files: Int
        public var directories: Int
        public var bytes: UInt64
        public var skippedBytes: UInt64
        public var seconds: Double
        public var verified: Bool
        /// Verified digests, the first `Summary.digestCap` of them (a push
        /// of a million files does not keep a million in memory).
        public var digests: [(path: String, digest: Digest128)]
        public var engine: EngineReport
        /// A chain push: what became of the hosts after the receiver.
        public var relayed: [HopReport.Outcome] = []
        /// What happened to the entries beyond "sent".
        public var tally = Tally()
    }

    /// Entries by outcome, for the summary and the done event.
    public struct Tally: Sendable, Equatable {
        /// Files the receiver had already, identical: not sent.
        public var identicalFiles: UInt64 = 0
        public var identicalBytes: UInt64 = 0
        /// Files assembled from the receiver's old copy and changed chunks.
        public var patchedFiles: UInt64 = 0
        public var deleted: UInt64 = 0
        public var symlinks: UInt64 = 0
        public var hardLinks: UInt64 = 0
        /// Bytes of holes in sparse files that did not travel.
        public var holeBytes: UInt64 = 0
        /// Entries left out, by why: "symlink", "special", "unreadable",
        /// "name".
        public var skipped: [String: Int] = [:]
        /// `--dry-run`: nothing was written; the counts say what would be.
        public var dryRun = false

        public init() {}

        public var skippedTotal: Int { skipped.values.reduce(0, +) }
    }

    public struct Failure: Sendable {
        public var session: String
        public var peer: String
        /// The same words as `error.description`.
        public var message: String
        /// What failed, for programs: kind, errno, path, the peer's reason.
        public var error: FTError

        package init(session: String, peer: String, error: FTError) {
            self.session = session
            self.peer = peer
            self.message = error.description
            self.error = error
        }
    }
}

/// Which backend and data path carried a push, with the engine's counters.
public struct EngineReport: Sendable {
    public var backend: BackendKind
    public var dataPath: String
    public var operations: [(kind: OpKind, count: UInt64, bytes: UInt64)]

    package init(backend: BackendKind, dataPath: String, stats: EngineStats) {
        self.backend = backend
        self.dataPath = dataPath
        self.operations = stats.summary
    }
}

package typealias ProgressHandler = (ProgressEvent) -> Void

/// Counts bytes and emits `.progress` at a bounded rate (every `interval`),
/// with a rate averaged over a sliding window.
struct ProgressMeter {
    let session: String
    let interval: UInt64
    let start = monotonicNanoseconds()
    var bytes: UInt64 = 0
    var totalBytes: UInt64?
    var lastEmit: UInt64 = 0
    /// (time, bytes) samples for the rate, about one per interval.
    var samples: [(UInt64, UInt64)] = []
    /// The file the last snapshot named, for the closing one.
    var lastFile: (path: String, size: UInt64?)?

    init(session: String, totalBytes: UInt64?, interval: UInt64 = 200_000_000) {
        self.session = session
        self.totalBytes = totalBytes
        self.interval = interval
        samples.reserveCapacity(32)
    }

    var elapsed: Double { Double(monotonicNanoseconds() - start) / 1e9 }

    /// A snapshot if one is due, nil otherwise.
    mutating func advance(by n: UInt64, path: @autoclosure () -> String, fileBytes: UInt64, fileSize: UInt64?, force: Bool = false) -> ProgressEvent? {
        bytes &+= n
        let now = monotonicNanoseconds()
        guard force || now - lastEmit >= interval else { return nil }
        lastEmit = now
        samples.append((now, bytes))
        // Keep about five seconds of samples.
        while let first = samples.first, now - first.0 > 5_000_000_000, samples.count > 2 { samples.removeFirst() }
        let (t0, b0) = samples.count > 1 ? samples[0] : (start, 0)
        let rate = now > t0 ? Double(bytes - b0) / (Double(now - t0) / 1e9) : 0
        let name = path()
        if !name.isEmpty { lastFile = (name, fileSize) }
        return .progress(.init(
            session: session, path: name, fileBytes: fileBytes, fileSize: fileSize, bytes: bytes,
            totalBytes: totalBytes, rate: rate, elapsed: Double(now - start) / 1e9))
    }

    /// The snapshot just before the summary: the totals, naming the last
    /// file shown at its full size. Nil if no file was ever shown (an
    /// empty push), rather than a snapshot that names nothing.
    mutating func closing() -> ProgressEvent? {
        guard let last = lastFile else { return nil }
        // A stream's size is what went: the push's bytes, it being the only entry.
        return advance(by: 0, path: last.path, fileBytes: last.size ?? bytes, fileSize: last.size, force: true)
    }
}
