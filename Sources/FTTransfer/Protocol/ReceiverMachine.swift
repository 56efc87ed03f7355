import FTWire

/// The receiver's protocol logic for one push, after the handshake, with no
/// I/O. The manifest streams in batches: each is checked as it arrives
/// (paths, order, kinds, links), reviewed against the destination by the
/// driver, answered, fed its data, and acknowledged once every entry of it
/// is settled; then the batch is forgotten, so memory follows the batches
/// in flight, not the size of the push.
package struct ReceiverMachine: Sendable {
    package enum Action: Equatable, Sendable {
        /// Look at the destination for batch `batchID` (conflicts, partials
        /// to offer, free space), create its directories, then call
        /// `answered(_:offers:)` and send the answer.
        case review(batchID: UInt32)
        /// The sender's decisions on the offers of a batch: carry them out
        /// (keep or drop held prefixes, reuse chunks) before its data.
        case plan(batchID: UInt32, [BatchPlan.Item])
        /// `length` payload bytes follow on the stream for entry `id` at
        /// `offset`; with parallel streams, then `chunkStored(id:)`.
        case store(id: UInt32, offset: UInt64, length: UInt32)
        /// Parallel streams: a chunk sent again whose bytes are all here;
        /// read its `length` payload bytes and drop them.
        case discard(length: UInt32)
        /// These bytes of entry `id` read as zeros: record them unwritten.
        case hole(id: UInt32, range: Range<UInt64>)
        /// Whole small files: verify each in memory, write and commit it,
        /// then `settled(_:)` for each.
        case storeSmall([SmallArrival])
        /// Every byte of entry `id` is in: verify, commit, then `settled`.
        case finish(id: UInt32)
        /// Entry `id` is a hard link to entry `source`, now committed as
        /// `sourcePath`: make the link, then `settled`.
        case link(id: UInt32, sourcePath: PeerPath)
        /// Every entry of a batch is settled: send this acknowledgement.
        case acknowledge(BatchAck)
        /// The push is complete: send `done`.
        case complete(Done)
        /// Send this error to the peer and end the session.
        case fail(ErrorFrame)
        /// The peer reported an error and ends the session.
        case peerFailed(ErrorFrame)
        /// A chain push: keep a copy and relay the stream to these hosts.
        case relay([String])
        /// The sender said what it asks of the push (and maybe its size).
        case info(PushInfo)
        /// The sender's scan is done: the push's size.
        case totals(Totals)
        case none
    }

    package enum Phase: Equatable, Sendable {
        case awaitingInfo
        case receiving
        case finished
        case failed
    }

    enum BatchStage: Equatable, Sendable {
        /// Waiting for its turn, or for the driver's review.
        case reviewing
        /// Answered with offers; the plan comes next.
        case awaitingPlan
        /// Its data flows.
        case receiving
    }

    struct ActiveBatch: Sendable {
        var entries: [IncomingEntry]
        var stage = BatchStage.reviewing
        var unsettled: Int
    }

    package private(set) var phase = Phase.awaitingInfo
    package private(set) var info = PushInfo()
    var batches: [UInt32: ActiveBatch] = [:]
    /// Batches announced and not yet reviewed, in order.
    private var toReview: [UInt32] = []
    private var reviewing: UInt32?
    /// Active entries: id → (batch, position).
    private var byID: [UInt32: (batch: UInt32, index: Int)] = [:]
    private var order = TreeOrder()
    private var nextBatch: UInt32 = 1
    private var lastID: UInt32 = 0
    private var sawEnd = false
    /// Files later entries may hard link to, once committed (path, committed).
    private var linkSources: [UInt32: (path: PeerPath, committed: Bool)] = [:]
    /// Hard links waiting for their source's commit: source → links.
    private var waitingLinks: [UInt32: [UInt32]] = [:]
    private var done = Done(files: 0, bytes: 0)

    package let version: UInt16
    let allowSensitive: Bool
    let links: LinkPolicy
    /// Batches in flight the receiver holds at once.
    package static let maxActiveBatches = 16
    /// Files one push may mark as hard-link sources.
    package static let maxLinkSources = 1 << 16
    /// Separate received pieces one file may have at once.
    package static let maxGaps = 4096
    /// Part of a chain push: no offers (each host gets the whole stream),
    /// and a `report` goes before `done`.
    package private(set) var chain = false
    /// The push may add data streams: chunks may arrive out of order, after
    /// their file's trailer, or again after a stream broke.
    package let parallel: Bool

    package init(version: UInt16 = ProtocolVersion.max, allowSensitive: Bool = false, links: LinkPolicy = .safe,
                parallel: Bool = false) {
        self.version = version
        self.allowSensitive = allowSensitive
        self.links = links
        self.parallel = parallel
    }

    package var verify: Bool { !info.flags.contains(.noVerify) }
    /// Whether a data stream may join now.
    package var takesDataStreams: Bool { parallel && phase == .receiving }
    package var activeBatches: Int { batches.count }

    /// Where a hard-link source of this push goes.
    package func linkSourcePath(_ id: UInt32) -> PeerPath? { linkSources[id]?.path }

    /// The entries of an active batch.
    package func entries(of batchID: UInt32) -> [IncomingEntry] { batches[batchID]?.entries ?? [] }

    /// Entry `id` of an active batch.
    package func entry(_ id: UInt32) -> IncomingEntry? {
        guard let at = byID[id] else { return nil }
        return batches[at.batch]?.entries[at.index]
    }

    /// `body` on entry `id` where it is, with its batch's stage; nil if no
    /// active batch has it.
    mutating func inPlace<R>(_ id: UInt32, _ body: (BatchStage, inout IncomingEntry) -> R) -> R? {
        guard let at = byID[id] else { return nil }
        let stage = batches[at.batch]!.stage
        return body(stage, &batches[at.batch]!.entries[at.index])
    }

    mutating func update(_ id: UInt32, _ change: (inout IncomingEntry) -> Void) {
        guard let at = byID[id] else { return }
        change(&batches[at.batch]!.entries[at.index])
    }

    package mutating func receive(_ frame: Frame) -> Action {
        if case .error(let e) = frame {
            phase = .failed
            return .peerFailed(e)
        }
        switch (phase, frame) {
        case (.awaitingInfo, .relay(let r)) where !chain:
            chain = true
            return .relay(r.hops)
        case (.awaitingInfo, .pushInfo(let i)):
            info = i
            phase = .receiving
            return .info(i)
        case (.receiving, .batch(let b)):
            return batch(b)
        case (.receiving, .totals(let t)):
            return .totals(t)
        case (.receiving, .plan(let p)):
            return plan(p)
        case (.receiving, .data(let h)):
            return data(h)
        case (.receiving, .hole(let h)):
            return hole(h)
        case (.receiving, .fileEnd(let t)):
            return trailer(t)
        case (.receiving, .smallFiles(let s)):
            return small(s)
        case (.receiving, .end) where !sawEnd:
            sawEnd = true
            return batches.isEmpty ? complete() : .none
        default:
            return fail(.protocolViolation, "unexpected \(frame.type) frame while \(phaseText)")
        }
    }

    var phaseText: String {
        switch phase {
        case .awaitingInfo: return "waiting for the push's first frame"
        case .receiving: return sawEnd ? "finishing the push" : "receiving"
        case .finished: return "finished"
        case .failed: return "failed"
        }
    }

    // MARK: Batches

    private mutating func batch(_ b: Batch) -> Action {
        guard !sawEnd else { return fail(.protocolViolation, "batch \(b.batchID) after the end of the push") }
        guard b.batchID == nextBatch else {
            return fail(.protocolViolation, "batch \(b.batchID) where batch \(nextBatch) was due")
        }
        guard batches.count < Self.maxActiveBatches else {
            return fail(.protocolViolation, "more than \(Self.maxActiveBatches) batches in flight")
        }
        guard !b.entries.isEmpty else { return fail(.protocolViolation, "batch \(b.batchID) is empty") }
        nextBatch += 1
        var entries: [IncomingEntry] = []
        entries.reserveCapacity(b.entries.count)
        for e in b.entries {
            // Validated once: the entry keeps the checked path.
            let path: PeerPath
            do {
                path = try PeerPath.validate(e.path)
            } catch {
                return fail(.refused, "refusing path '\(Escape.forMessage(bytes: e.path))': \(error)")
            }
            if let refusal = check(e, path) { return refusal }
            entries.append(IncomingEntry(entry: e, path: path, batchID: b.batchID))
        }
        for (i, e) in entries.enumerated() { byID[e.id] = (b.batchID, i) }
        batches[b.batchID] = ActiveBatch(entries: entries, unsettled: entries.count)
        toReview.append(b.batchID)
        return nextReview()
    }

    /// A receiver's own directories (`Stage`): no peer writes into them.
    static let stagePrefix = Array(".ft-stage-".utf8)

    /// The rules for one entry whose path is valid: sensitive names,
    /// the receiver's own names, order, ids, kinds.
    private mutating func check(_ e: ManifestEntry, _ path: PeerPath) -> Action? {
        let name = MessageName(path: path)
        if !allowSensitive, let sensitive = path.sensitiveComponent {
            return fail(.refused, "refusing '\(name)': '\(sensitive)' holds logins or start-up scripts (run ft recv with --allow-sensitive to accept it)")
        }
        if path.top.starts(with: Self.stagePrefix) {
            return fail(.refused, "refusing '\(name)': names starting with .ft-stage- are where this receiver builds new directories")
        }
        guard e.fileID > lastID else {
            return fail(.protocolViolation, "file id \(e.fileID) is not above the last one (\(lastID)): ids are announced once, in order")
        }
        lastID = e.fileID
        if let why = order.admit(e.path, kind: e.kind) { return fail(.refused, why) }
        switch e.kind {
        case .file:
            guard e.size <= UInt64(Int64.max) else { return fail(.refused, "'\(name)' has an impossible size \(e.size)") }
            if e.flags.contains(.linkSource) {
                guard linkSources.count < Self.maxLinkSources else {
                    return fail(.refused, "more than \(Self.maxLinkSources) hard-linked files in one push")
                }
                linkSources[e.fileID] = (path, false)
            }
        case .symlink:
            do {
                try PeerPath.validateTarget(e.linkTarget)
            } catch {
                return fail(.refused, "refusing symlink '\(name)': its target: \(error)")
            }
        case .hardlink:
            guard linkSources[e.linkTo] != nil else {
                return fail(.refused, "'\(name)' is a hard link to entry \(e.linkTo), which is not a file this push announced as a link source")
            }
        case .directory, .stdin:
            break
        }
        return nil
    }

    private mutating func nextReview() -> Action {
        guard reviewing == nil, !toReview.isEmpty else { return .none }
        let id = toReview.removeFirst()
        reviewing = id
        return .review(batchID: id)
    }

    /// The driver reviewed batch `batchID` and offers these (by entry id;
    /// none: every entry is needed whole). Returns what to do next: links
    /// whose sources are committed, an acknowledgement if nothing is left,
    /// the next review.
    package mutating func answered(_ batchID: UInt32, offers: [UInt32: BatchAnswer.Offer]) -> [Action] {
        precondition(reviewing == batchID)
        reviewing = nil
        guard var b = batches[batchID] else { return [] }
        batches[batchID] = nil
        for i in b.entries.indices {
            b.entries[i].offer = offers[b.entries[i].id]
        }
        // Identical entries are settled by the receiver alone; the other
        // offers wait for the sender's decisions.
        let needsPlan = offers.values.contains { if case .identical = $0 { return false } else { return true } }
        // A dry run gets no plan: the driver settles every entry as it is.
        b.stage = needsPlan && !chain && !info.flags.contains(.dryRun) ? .awaitingPlan : .receiving
        batches[batchID] = b
        var out = ackIfSettled(batchID)
        // By index, here and below: an entry bound by `for e in` is a copy,
        // a retain and a release of each of its paths and ranges, and a
        // batch of small files is thousands of entries.
        for i in b.entries.indices where b.entries[i].entry.kind == .hardlink && b.entries[i].offer != .identical {
            let (id, to) = (b.entries[i].id, b.entries[i].entry.linkTo)
            if let source = linkSources[to], source.committed {
                out.append(.link(id: id, sourcePath: source.path))
            } else {
                waitingLinks[to, default: []].append(id)
            }
        }
        let next = nextReview()
        if next != .none { out.append(next) }
        return out
    }

    private mutating func plan(_ p: BatchPlan) -> Action {
        guard let b = batches[p.batchID], b.stage == .awaitingPlan else {
            return fail(.protocolViolation, "a plan for batch \(p.batchID), which is not waiting for one")
        }
        var seen = Set<UInt32>()
        for item in p.items {
            guard seen.insert(item.fileID).inserted, let e = entry(item.fileID), e.batchID == p.batchID, let offer = e.offer else {
                return fail(.protocolViolation, "a plan for file id \(item.fileID), which batch \(p.batchID) did not offer")
            }
            switch (offer, item.decision) {
            case (_, .whole):
                break
            case (.prefix(let bytes, _), .resumeAfter(let n)) where n == bytes:
                update(item.fileID) { _ = $0.received.insert(0..<n) }
            case (.identical, .skip), (.digest, .skip):
                break
            case (.chunks(let size, let digests), .patch(let reuse)) where reuse.count == digests.count:
                let total = e.entry.size
                update(item.fileID) { x in
                    for (k, r) in reuse.enumerated() where r {
                        let lo = UInt64(k) * UInt64(size)
                        _ = x.received.insert(lo..<min(total, lo + UInt64(size)))
                    }
                }
            default:
                return fail(.protocolViolation, "plan for '\(MessageName(path: e.path))' does not fit what was offered")
            }
            update(item.fileID) { $0.decision = item.decision }
        }
        batches[p.batchID]!.stage = .receiving
        return .plan(batchID: p.batchID, p.items)
    }

    // MARK: Settling

    /// Entry `id` is settled (committed, skipped, linked, or failed with a
    /// status the sender will see). Returns the links that waited for it,
    /// its batch's acknowledgement when that was the last, and `complete`
    /// when the push is done.
    package mutating func settled(_ id: UInt32, _ status: BatchAck.Status, digest: Digest128 = .zero,
                                 bytes: UInt64 = 0) -> [Action] {
        guard let at = byID[id], let e = inPlace(id, { _, e -> Settling? in
            guard !e.finished else { return nil }
            e.result = BatchAck.Result(fileID: id, status: status, digest: digest)
            return Settling(e)
        }), let e else { return [] }
        count(e, status, bytes)
        var out: [Action] = []
        // A source the receiver already had (identical) is there to link to
        // as well as one it just wrote.
        if e.linkSource, status == .committed || status == .skipped, var source = linkSources[id] {
            source.committed = true
            linkSources[id] = source
            for link in waitingLinks.removeValue(forKey: id) ?? [] { out.append(.link(id: link, sourcePath: source.path)) }
        }
        batches[at.batch]!.unsettled -= 1
        return out + ackIfSettled(at.batch)
    }

    /// A receiving batch whose entries are all settled is acknowledged and
    /// forgotten.
    private mutating func ackIfSettled(_ batchID: UInt32) -> [Action] {
        guard let b = batches[batchID], b.unsettled == 0, b.stage == .receiving else { return [] }
        batches[batchID] = nil
        var results: [BatchAck.Result] = []
        results.reserveCapacity(b.entries.count)
        for i in b.entries.indices {
            byID[b.entries[i].id] = nil
            if let r = b.entries[i].result { results.append(r) }
        }
        var out: [Action] = [.acknowledge(BatchAck(batchID: batchID, results: results))]
        if sawEnd, batches.isEmpty { out.append(complete()) }
        return out
    }

    /// What `settled` needs of an entry, read where it is: a copy of the
    /// whole entry per file cost a retain and a release of each of its
    /// paths and ranges.
    private struct Settling {
        var kind: ManifestEntry.Kind
        var size: UInt64
        var unreadable: Bool
        var skipped: Bool
        var patched: Bool
        var resumedAfter: UInt64
        var linkSource: Bool

        init(_ e: borrowing IncomingEntry) {
            kind = e.entry.kind
            size = e.entry.size
            unreadable = e.trailer?.unreadable == true
            skipped = e.decision == .skip
            if case .patch = e.decision { patched = true } else { patched = false }
            if case .resumeAfter(let n) = e.decision { resumedAfter = n } else { resumedAfter = 0 }
            linkSource = e.entry.flags.contains(.linkSource)
        }
    }

    private mutating func count(_ e: Settling, _ status: BatchAck.Status, _ bytes: UInt64) {
        guard status == .committed || status == .skipped else { return }
        // The sender could not read it: nothing arrived, nothing was there.
        if e.unreadable { return }
        switch e.kind {
        case .file, .stdin:
            if status == .skipped || e.skipped {
                done.skippedFiles += 1
                done.skippedBytes += e.size
            } else {
                done.files += 1
                done.bytes += bytes
                if e.patched { done.patchedFiles += 1 }
                done.skippedBytes += e.resumedAfter
            }
        case .symlink where status == .committed: done.symlinks += 1
        case .hardlink where status == .committed: done.hardLinks += 1
        default: break
        }
    }

    /// A batch whose entries all settled before its plan arrived waits for
    /// the plan; batches with nothing offered are receiving from the start.
    package func batchStage(_ id: UInt32) -> String {
        switch batches[id]?.stage {
        case .reviewing?: return "reviewing"
        case .awaitingPlan?: return "waiting for its plan"
        case .receiving?: return "receiving"
        case nil: return "done"
        }
    }

    private mutating func complete() -> Action {
        phase = .finished
        return .complete(done)
    }

    mutating func fail(_ code: ErrorFrame.Code, _ message: String) -> Action {
        phase = .failed
        return .fail(ErrorFrame(code, message))
    }
}
