/// What the sender asks of this push, sent once before the first batch.
public struct PushInfo: Equatable, Sendable {
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// The sender will not send hashes; the receiver cannot verify.
        public static let noVerify = Flags(rawValue: 1 << 0)
        /// Skip what the receiver already has, patch what changed.
        public static let sync = Flags(rawValue: 1 << 1)
        /// With sync: identical means the same content hash, not the same
        /// size and mtime.
        public static let checksum = Flags(rawValue: 1 << 2)
        /// With sync: remove what the source no longer has.
        public static let delete = Flags(rawValue: 1 << 3)
        /// Say what would be done; write nothing.
        public static let dryRun = Flags(rawValue: 1 << 4)
        /// Keep uid and gid (a receiver running as root only).
        public static let owner = Flags(rawValue: 1 << 5)
        static let known: Flags = [.noVerify, .sync, .checksum, .delete, .dryRun, .owner]
    }

    public static let unknown = UInt64.max
    static let bodySize = 24

    public var flags: Flags
    /// Entries and bytes of the whole push, or `unknown` until the scan is
    /// done (they may follow in a `totals` frame).
    public var entries: UInt64
    public var bytes: UInt64

    public init(flags: Flags = [], entries: UInt64 = PushInfo.unknown, bytes: UInt64 = PushInfo.unknown) {
        self.flags = flags
        self.entries = entries
        self.bytes = bytes
    }
}

/// The push's size once the sender's scan is complete.
public struct Totals: Equatable, Sendable {
    public var entries: UInt64
    /// Bytes the files take: their sizes, except that a sparse file counts
    /// its allocated blocks (its holes neither travel nor land).
    public var bytes: UInt64
    public init(entries: UInt64, bytes: UInt64) {
        self.entries = entries
        self.bytes = bytes
    }
}

/// The receiver's answer to one batch, for the entries it does not simply
/// need whole. A long answer spans frames; the last has `last` set.
public struct BatchAnswer: Equatable, Sendable {
    public enum Offer: Equatable, Sendable {
        /// The receiver has this entry, identical: nothing is sent.
        case identical
        /// An earlier push left this many bytes from the start, with their
        /// xxh3-128 (resume).
        case prefix(bytes: UInt64, digest: Digest128)
        /// The receiver's copy (of the same size) hashes to this (sync with
        /// `--checksum`): the sender skips it if its own hash agrees.
        case digest(Digest128)
        /// The receiver's copy in chunks of `chunkSize`, each hashed: the
        /// sender sends only the chunks that differ.
        case chunks(chunkSize: UInt32, digests: [Digest128])

        var tag: UInt8 {
            switch self {
            case .identical: return 1
            case .prefix: return 2
            case .digest: return 3
            case .chunks: return 4
            }
        }
    }

    public struct Item: Equatable, Sendable {
        public var fileID: UInt32
        public var offer: Offer
        public init(fileID: UInt32, offer: Offer) {
            self.fileID = fileID
            self.offer = offer
        }

        var encodedSize: Int {
            switch offer {
            case .identical: return 8
            case .prefix: return 8 + 24
            case .digest: return 8 + 16
            case .chunks(_, let d): return 8 + 8 + 16 * d.count
            }
        }
    }

    public static let frameCap: UInt32 = 1 << 20
    public static let maxChunks = 65_536
    static let emptySize = 12

    public var batchID: UInt32
    /// The batch's answer is complete with this frame.
    public var last: Bool
    public var items: [Item]

    public init(batchID: UInt32, last: Bool = true, items: [Item] = []) {
        self.batchID = batchID
        self.last = last
        self.items = items
    }

    /// Splits items into frames under the cap.
    public static func frames(batchID: UInt32, _ items: [Item]) -> [BatchAnswer] {
        var out: [BatchAnswer] = []
        var current: [Item] = []
        var size = emptySize
        for i in items {
            if size + i.encodedSize > Int(frameCap), !current.isEmpty {
                out.append(BatchAnswer(batchID: batchID, last: false, items: current))
                current = []
                size = emptySize
            }
            current.append(i)
            size += i.encodedSize
        }
        out.append(BatchAnswer(batchID: batchID, last: true, items: current))
        return out
    }
}

/// The sender's decision on each offer of a batch's answer, before its data.
public struct BatchPlan: Equatable, Sendable {
    public enum Decision: Equatable, Sendable {
        /// The offer is not taken: the whole entry follows.
        case whole
        /// The offered prefix is good: the rest follows.
        case resumeAfter(UInt64)
        /// Nothing follows: the receiver's copy is the same.
        case skip
        /// Chunks marked true are reused from the receiver's copy; the
        /// others follow as data.
        case patch(reuse: [Bool])

        var tag: UInt8 {
            switch self {
            case .whole: return 0
            case .resumeAfter: return 1
            case .skip: return 2
            case .patch: return 3
            }
        }
    }

    public struct Item: Equatable, Sendable {
        public var fileID: UInt32
        public var decision: Decision
        public init(fileID: UInt32, decision: Decision) {
            self.fileID = fileID
            self.decision = decision
        }
    }

    public static let frameCap: UInt32 = 1 << 20

    public var batchID: UInt32
    public var items: [Item]

    public init(batchID: UInt32, items: [Item]) {
        self.batchID = batchID
        self.items = items
    }
}

/// The receiver's verdict on every entry of one batch, once all of them are
/// committed (or refused).
public struct BatchAck: Equatable, Sendable {
    public enum Status: UInt8, Sendable {
        case committed = 0
        case hashMismatch = 1
        case ioError = 2
        /// The sender's plan said skip, or the entry is not written (dry run).
        case skipped = 3
    }

    public struct Result: Equatable, Sendable {
        public var fileID: UInt32
        public var status: Status
        /// What the receiver computed over what it holds (a symlink: over
        /// its target text).
        public var digest: Digest128
        public init(fileID: UInt32, status: Status, digest: Digest128) {
            self.fileID = fileID
            self.status = status
            self.digest = digest
        }
        static let encodedSize = 24
    }

    public static let frameCap = UInt32(8 + Result.encodedSize * Batch.maxEntries)

    public var batchID: UInt32
    public var results: [Result]

    public init(batchID: UInt32, results: [Result]) {
        self.batchID = batchID
        self.results = results
    }
}

/// A range of a sparse file that reads as zeros: nothing of it travels, and
/// the receiver leaves it unwritten.
public struct Hole: Equatable, Sendable {
    public static let bodySize: UInt32 = 24

    public var fileID: UInt32
    public var offset: UInt64
    public var length: UInt64

    public init(fileID: UInt32, offset: UInt64, length: UInt64) {
        self.fileID = fileID
        self.offset = offset
        self.length = length
    }
}
