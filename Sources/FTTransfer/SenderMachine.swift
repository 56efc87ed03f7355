import FTWire

/// The sender's protocol logic, with no I/O: it is fed the receiver's
/// frames and answers with what to do next.
public struct SenderMachine {
    public enum Phase: Equatable, Sendable {
        case awaitingHello
        case awaitingAuth
        case awaitingAccept
        case sending
        case awaitingDone
        case finished
        case failed
    }

    public enum Action: Equatable, Sendable {
        /// Send the manifest, then wait for `accept`. `unauthenticated`: the
        /// receiver accepts anyone, so the code we hold was not used.
        case sendManifest(version: UInt16, unauthenticated: Bool)
        /// The receiver wants the code: send our proof, wait for its own.
        case authenticate(receiver: Hello)
        /// Check the receiver's proof; then `authenticated()`.
        case checkReceiver(AuthProof)
        /// The receiver wants a code and we have none.
        case needCode
        /// Start the data, skipping what the receiver already has.
        case startData(Accept)
        /// The receiver committed (or rejected) a file.
        case acknowledged(index: Int, FileAck)
        /// The receiver confirmed the whole push.
        case complete(Done)
        /// A chain receiver's news of the hosts after it.
        case hopReport(HopReport)
        /// The receiver refused or failed.
        case peerFailed(ErrorFrame)
        /// The receiver broke the protocol.
        case violation(String)
        case none
    }

    public private(set) var phase = Phase.awaitingHello
    private let fileIndex: [UInt32: Int]
    private var acked: Set<Int> = []
    private let dataEntries: Int
    private var reported = false

    let hasCode: Bool
    private var version: UInt16 = 0
    /// What the receiver's hello offered.
    public private(set) var receiverFeatures: Features = []

    public init(entries: [ManifestEntry], hasCode: Bool = false) {
        self.hasCode = hasCode
        var index: [UInt32: Int] = [:]
        for (i, e) in entries.enumerated() { index[e.fileID] = i }
        fileIndex = index
        dataEntries = entries.filter { $0.kind != .directory }.count
    }

    public var allAcknowledged: Bool { acked.count == dataEntries }

    public func isAcknowledged(_ index: Int) -> Bool { acked.contains(index) }

    public mutating func receive(_ frame: Frame) -> Action {
        if case .error(let e) = frame {
            phase = .failed
            return .peerFailed(e)
        }
        switch (phase, frame) {
        case (.awaitingHello, .hello(let h)):
            guard h.role == .receiver else { return violation("peer is not a receiver") }
            switch ProtocolVersion.negotiate(peerMin: h.minVersion, peerMax: h.maxVersion) {
            case .failure(let m):
                phase = .failed
                return .peerFailed(ErrorFrame(.version, m.description))
            case .success(let v):
                version = v
                receiverFeatures = h.features
                if h.features.contains(.auth) {
                    guard hasCode else {
                        phase = .failed
                        return .needCode
                    }
                    phase = .awaitingAuth
                    return .authenticate(receiver: h)
                }
                phase = .awaitingAccept
                return .sendManifest(version: v, unauthenticated: hasCode)
            }
        case (.awaitingAuth, .auth(let proof)):
            return .checkReceiver(proof)
        case (.awaitingAccept, .accept(let a)):
            phase = .sending
            return .startData(a)
        case (.sending, .fileAck(let a)), (.awaitingDone, .fileAck(let a)):
            guard let i = fileIndex[a.fileID] else { return violation("acknowledgement for unknown file id \(a.fileID)") }
            guard acked.insert(i).inserted else { return violation("file id \(a.fileID) acknowledged twice") }
            return .acknowledged(index: i, a)
        case (.sending, .report(let r)), (.awaitingDone, .report(let r)):
            guard !reported else { return violation("a second report") }
            reported = true
            return .hopReport(r)
        case (.awaitingDone, .done(let d)):
            guard allAcknowledged else { return violation("done before every file was acknowledged") }
            phase = .finished
            return .complete(d)
        default:
            return violation("unexpected \(frame.type) frame while \(phase)")
        }
    }

    /// The receiver proved it knows the code: the manifest may go.
    public mutating func authenticated() -> Action {
        precondition(phase == .awaitingAuth)
        phase = .awaitingAccept
        return .sendManifest(version: version, unauthenticated: false)
    }

    /// The sender wrote its `end` frame.
    public mutating func endSent() {
        if phase == .sending { phase = .awaitingDone }
    }

    private mutating func violation(_ s: String) -> Action {
        phase = .failed
        return .violation(s)
    }
}

/// The order of writes for a push: streams first, then big files largest
/// first (a long file started late would leave the link idle at the end),
/// then small files batched whole into `small-files` frames; each big
/// file's chunks and its trailer; then `end`. Pure, so ordering and resume
/// offsets are testable.
public struct SendPlan: Sendable {
    public enum Step: Equatable, Sendable {
        /// Send bytes [offset, offset+length) of entry `index`.
        case chunk(index: Int, offset: UInt64, length: UInt32)
        /// Pump a stream (stdin) until EOF.
        case stream(index: Int)
        /// Send the trailer of entry `index`.
        case fileEnd(index: Int)
        /// Send these whole files in one `small-files` frame.
        case small([Int])
        case end
    }

    private enum Item: Sendable {
        case one(Int)
        case batch([Int])
    }

    private let entries: [ManifestEntry]
    private let chunkSize: UInt64
    private var skip: [UInt32: UInt64]
    private let order: [Item]
    private var position = 0
    private var offset: UInt64 = 0
    private var startedEntry = false
    private var ended = false

    /// Files sent in chunks (not streams, not small-file batches), in the
    /// order they go out: what a helper hashing ahead of the sender must
    /// read, and in which order.
    public var chunkedFiles: [Int] {
        order.compactMap { item in
            guard case .one(let i) = item, entries[i].kind == .file else { return nil }
            return i
        }
    }

    /// `smallFiles`: batch files up to `SmallFiles.maxFileSize`.
    public init(entries: [ManifestEntry], chunkSize: UInt32, skip: [UInt32: UInt64] = [:], smallFiles: Bool = true) {
        precondition(chunkSize > 0)
        self.entries = entries
        self.chunkSize = UInt64(chunkSize)
        self.skip = skip
        var streams: [Int] = []
        var big: [Int] = []
        var small: [Int] = []
        for (i, e) in entries.enumerated() {
            switch e.kind {
            case .directory: continue
            case .stream: streams.append(i)
            case .file:
                if smallFiles, e.size <= SmallFiles.maxFileSize, skip[e.fileID] == nil { small.append(i) } else { big.append(i) }
            }
        }
        big.sort { entries[$0].size > entries[$1].size || (entries[$0].size == entries[$1].size && $0 < $1) }
        var items = (streams + big).map(Item.one)
        var batch: [Int] = []
        var bytes = SmallFiles.emptyBodySize
        for i in small {
            let cost = SmallFiles.File.headerSize + Int(entries[i].size)
            if !batch.isEmpty, bytes + cost > SmallFiles.batchBytes {
                items.append(.batch(batch))
                batch = []
                bytes = SmallFiles.emptyBodySize
            }
            batch.append(i)
            bytes += cost
        }
        if !batch.isEmpty { items.append(.batch(batch)) }
        order = items
    }

    public mutating func next() -> Step? {
        while position < order.count {
            let index: Int
            switch order[position] {
            case .batch(let files):
                position += 1
                return .small(files)
            case .one(let i):
                index = i
            }
            let e = entries[index]
            if e.kind == .stream {
                if !startedEntry {
                    startedEntry = true
                    return .stream(index: index)
                }
            } else {
                if !startedEntry {
                    startedEntry = true
                    offset = min(skip[e.fileID] ?? 0, e.size)
                }
                if offset < e.size {
                    let n = min(chunkSize, e.size - offset)
                    defer { offset += n }
                    return .chunk(index: index, offset: offset, length: UInt32(n))
                }
            }
            position += 1
            startedEntry = false
            return .fileEnd(index: index)
        }
        if ended { return nil }
        ended = true
        return .end
    }
}
