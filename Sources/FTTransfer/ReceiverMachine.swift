import FTWire

/// A small file that arrived whole, for entry `index`.
public struct SmallArrival: Equatable, Sendable {
    public var index: Int
    public var file: SmallFiles.File
}

/// A prefix of a file the receiver held and the sender chose not to resend.
public struct ResumedPrefix: Equatable, Sendable {
    public var index: Int
    public var bytes: UInt64
}

/// One announced entry, after its path passed every rule.
public struct IncomingEntry: Equatable, Sendable {
    public var entry: ManifestEntry
    public var path: PeerPath
    public var received = ReceivedRanges()
    public var trailer: FileEnd?
    public var finished = false
    /// Parallel streams: chunks whose payload is still on its way to the
    /// file, and whether `finish` was handed out.
    public var pending = 0
    public var finishing = false

    public var isData: Bool { entry.kind != .directory }
}

/// An entry's name as a message shows it, escaped only when a message is
/// made: the checks on every chunk and small file must not pay for it.
struct MessageName: CustomStringConvertible {
    let path: PeerPath
    var description: String { Escape.forMessage(bytes: Array(path.description.utf8)) }
}

/// The receiver's protocol logic for one session, with no I/O: it is fed
/// frames and reports of finished work, and answers with what to do next.
/// Everything a peer can get wrong is caught here, before the driver
/// touches a file.
public struct ReceiverMachine {
    public enum Phase: Equatable, Sendable {
        case awaitingHello
        case awaitingAuth
        case awaitingManifest
        case reviewing
        case awaitingResume
        case receiving
        /// An extra data stream of another session (`lane` hello): only
        /// `data` frames, checked by that session's machine.
        case lane
        case finished
        case failed
    }

    public enum Action: Equatable, Sendable {
        /// Answer the hello, speaking `version` (and asking for a proof of
        /// the code when auth is required).
        case replyHello(version: UInt16)
        /// Check the sender's proof; then `authenticated()` and send ours.
        case checkAuth(AuthProof)
        /// Check the entries against the destination, create directories,
        /// then call `accepted()` and send `accept` (or fail).
        case review
        /// `length` payload bytes follow on the stream: store them at
        /// `offset` of entry `index`; with parallel streams, then call
        /// `chunkStored(index:)` (or `chunkLost` if its stream broke).
        case store(index: Int, offset: UInt64, length: UInt32)
        /// Parallel streams: a chunk sent again whose bytes are all here
        /// already; read its `length` payload bytes and drop them.
        case discard(length: UInt32)
        /// This lane's hello and proof are good: attach it to the session
        /// `sessionID`, then pass its chunks to that session's
        /// `laneData(_:)`.
        case joinLane(sessionID: [UInt8])
        /// A data frame on a lane, for the owning session's machine.
        case laneData(DataHeader)
        /// Keep the held prefixes the sender skips (`keep`: entry index and
        /// bytes), discard the other offered ones (`drop`: entry indexes).
        case resume(keep: [ResumedPrefix], drop: [Int])
        /// Whole small files: verify each in memory, write, commit and
        /// acknowledge it, then call `finished(index:)` for each.
        case storeSmall([SmallArrival])
        /// Every byte of entry `index` is in: verify against the trailer,
        /// commit, acknowledge, then call `finished(index:)`.
        case finish(index: Int)
        /// The push is complete: send `done`.
        case complete(Done)
        /// Send this error to the peer and end the session.
        case fail(ErrorFrame)
        /// The peer reported an error and ends the session.
        case peerFailed(ErrorFrame)
        /// A chain push: keep a copy and relay the stream to these hosts
        /// (none: this is the chain's last host).
        case relay([String])
        case none
    }

    public private(set) var phase = Phase.awaitingHello
    public private(set) var entries: [IncomingEntry] = []
    public private(set) var version: UInt16 = 0
    public private(set) var manifestEnd: ManifestEnd?
    private var announced: [ManifestEntry] = []
    private var byID: [UInt32: Int] = [:]
    private var sawEnd = false
    private var unfinished = 0
    private var committedBytes: UInt64 = 0
    private var committedFiles: UInt64 = 0
    let maxEntries: Int
    let requireAuth: Bool
    let allowSensitive: Bool
    /// The sender's hello, for the auth proofs.
    public private(set) var senderHello: Hello?
    /// Part of a chain push: no resume offers (each host gets the whole
    /// stream), and a `report` goes before `done`.
    public private(set) var chain = false
    /// The sender may add data streams (the driver agreed in its hello):
    /// chunks may arrive out of order, after their file's trailer, or
    /// again after a stream broke.
    public private(set) var parallel = false
    /// This connection is a lane of another session.
    public private(set) var isLane = false

    public init(maxEntries: Int = Manifest.maxEntries, requireAuth: Bool = false, allowSensitive: Bool = false) {
        self.maxEntries = maxEntries
        self.requireAuth = requireAuth
        self.allowSensitive = allowSensitive
    }

    public var verify: Bool { !(manifestEnd?.flags.contains(.noVerify) ?? false) }

    public mutating func receive(_ frame: Frame) -> Action {
        if case .error(let e) = frame {
            phase = .failed
            return .peerFailed(e)
        }
        switch (phase, frame) {
        case (.awaitingHello, .hello(let h)):
            guard h.role == .sender else { return fail(.protocolViolation, "peer is not a sender") }
            switch ProtocolVersion.negotiate(peerMin: h.minVersion, peerMax: h.maxVersion) {
            case .failure(let m):
                return fail(.version, m.description)
            case .success(let v):
                version = v
                senderHello = h
                isLane = h.features.contains(.lane)
                phase = requireAuth ? .awaitingAuth : isLane ? .lane : .awaitingManifest
                return .replyHello(version: v)
            }
        case (.awaitingAuth, .auth(let proof)):
            return .checkAuth(proof)
        case (.awaitingAuth, _):
            return fail(.auth, "this receiver needs the one-time code; the sender sent a \(frame.type) frame instead of proving it knows the code (set FT_CODE or --code-file on the sender)")
        case (.awaitingManifest, .relay(let r)) where !chain && announced.isEmpty:
            chain = true
            return .relay(r.hops)
        case (.awaitingManifest, .manifest(let list)):
            guard announced.count + list.count <= maxEntries else {
                return fail(.refused, "manifest has more than \(maxEntries) entries")
            }
            announced.append(contentsOf: list)
            return .none
        case (.awaitingManifest, .manifestEnd(let end)):
            return review(end)
        case (.awaitingResume, .resume(let r)):
            return resume(r)
        case (.receiving, .data(let h)):
            return data(h)
        case (.lane, .data(let h)):
            return .laneData(h)
        case (.receiving, .fileEnd(let t)):
            return trailer(t)
        case (.receiving, .smallFiles(let batch)):
            return small(batch)
        case (.receiving, .end):
            sawEnd = true
            let missing = entries.filter { $0.isData && $0.trailer == nil }.count
            guard missing == 0 else {
                return fail(.protocolViolation, "push ended with \(missing) files never finished")
            }
            return unfinished == 0 ? complete() : .none
        default:
            return fail(.protocolViolation, "unexpected \(frame.type) frame while \(phase)")
        }
    }

    private mutating func review(_ end: ManifestEnd) -> Action {
        guard Int(end.entryCount) == announced.count else {
            return fail(.protocolViolation, "manifest-end counts \(end.entryCount) entries but \(announced.count) arrived")
        }
        var seen: [PeerPath: ManifestEntry.Kind] = [:]
        var total: UInt64 = 0
        entries.reserveCapacity(announced.count)
        for e in announced {
            let path: PeerPath
            do {
                path = try PeerPath.validate(e.path)
            } catch {
                return fail(.refused, "refusing path '\(Escape.forMessage(bytes: e.path))': \(error)")
            }
            if !allowSensitive, let name = path.sensitiveComponent {
                return fail(.refused, "refusing '\(Escape.forMessage(bytes: Array(path.description.utf8)))': '\(name)' holds logins or start-up scripts (run ft recv with --allow-sensitive to accept it)")
            }
            guard byID[e.fileID] == nil else {
                return fail(.protocolViolation, "file id \(e.fileID) announced twice")
            }
            guard seen[path] == nil else {
                return fail(.refused, "'\(Escape.forMessage(bytes: Array(path.description.utf8)))' announced twice")
            }
            seen[path] = e.kind
            if e.kind == .file {
                let (sum, overflow) = total.addingReportingOverflow(e.size)
                guard !overflow, e.size <= UInt64(Int64.max) else {
                    return fail(.refused, "'\(Escape.forMessage(bytes: Array(path.description.utf8)))' has an impossible size \(e.size)")
                }
                total = sum
            }
            byID[e.fileID] = entries.count
            entries.append(IncomingEntry(entry: e, path: path))
            if e.kind != .directory { unfinished += 1 }
        }
        // A file may not stand where another entry needs a directory.
        for e in entries {
            var parent = e.path.parent
            while let p = parent {
                if let kind = seen[p], kind != .directory {
                    return fail(.refused, "'\(Escape.forMessage(bytes: Array(e.path.description.utf8)))' needs '\(Escape.forMessage(bytes: Array(p.description.utf8)))' to be a directory, but it is announced as a file")
                }
                parent = p.parent
            }
        }
        guard total == end.totalBytes else {
            return fail(.protocolViolation, "manifest-end says \(end.totalBytes) bytes but the entries add up to \(total)")
        }
        announced = []
        manifestEnd = end
        phase = .reviewing
        return .review
    }

    /// The sender's proof matched.
    public mutating func authenticated() {
        precondition(phase == .awaitingAuth)
        phase = isLane ? .lane : .awaitingManifest
    }

    /// A lane's hello (and proof) is accepted: what to do with it.
    public var laneToJoin: Action? {
        guard isLane, phase == .lane, let h = senderHello else { return nil }
        return .joinLane(sessionID: h.sessionID)
    }

    /// The driver takes extra data streams for this push (it said so in
    /// its hello).
    public mutating func allowStreams() {
        precondition(!isLane)
        parallel = true
    }

    /// Whether a lane may join now.
    public var takesLanes: Bool { parallel && phase == .receiving }

    /// A data frame that arrived on one of this session's lanes.
    public mutating func laneData(_ h: DataHeader) -> Action {
        guard parallel, phase == .receiving else {
            return fail(.protocolViolation, "a data stream sent a chunk while the push is \(phase)")
        }
        if let i = byID[h.fileID], entries[i].entry.kind == .stream {
            return fail(.protocolViolation, "a stream's bytes came on an extra data stream")
        }
        return data(h)
    }

    /// A chunk's payload is in the file. Returns `finish` when that was the
    /// last piece a trailer was waiting for.
    public mutating func chunkStored(index: Int) -> Action {
        guard parallel else { return .none }
        entries[index].pending -= 1
        return finishIfWhole(index)
    }

    /// A chunk's stream broke before its payload was all in: its bytes
    /// are to come again, on another stream.
    public mutating func chunkLost(index: Int, range: Range<UInt64>) {
        guard parallel else { return }
        entries[index].pending -= 1
        entries[index].received.remove(range)
    }

    private mutating func finishIfWhole(_ i: Int) -> Action {
        let e = entries[i]
        guard let t = e.trailer, !e.finishing, !e.finished, e.pending == 0,
              e.received.contiguous == t.size, e.received.total == t.size else { return .none }
        entries[i].finishing = true
        return .finish(index: i)
    }

    /// The driver accepted the manifest and prepared the destination; it
    /// offers the prefixes it already holds (empty: none).
    public mutating func accepted(offering have: [Accept.Have] = []) {
        precondition(phase == .reviewing)
        offered = have
        phase = have.isEmpty ? .receiving : .awaitingResume
        for i in entries.indices where !entries[i].isData { entries[i].finished = true }
    }

    private var offered: [Accept.Have] = []

    private mutating func resume(_ r: Resume) -> Action {
        var keep: [ResumedPrefix] = []
        var kept = Set<UInt32>()
        for skip in r.skips {
            guard let have = offered.first(where: { $0.fileID == skip.fileID }), have.bytes == skip.bytes, kept.insert(skip.fileID).inserted else {
                return fail(.protocolViolation, "resume of file id \(skip.fileID) at \(skip.bytes) bytes was not offered")
            }
            let i = byID[skip.fileID]!
            _ = entries[i].received.insert(0..<skip.bytes)
            keep.append(ResumedPrefix(index: i, bytes: skip.bytes))
        }
        let drop = offered.filter { !kept.contains($0.fileID) }.map { byID[$0.fileID]! }
        offered = []
        phase = .receiving
        return .resume(keep: keep, drop: drop)
    }

    private mutating func data(_ h: DataHeader) -> Action {
        guard let i = byID[h.fileID] else { return fail(.protocolViolation, "chunk for unknown file id \(h.fileID)") }
        let e = entries[i]
        let name = MessageName(path: e.path)
        guard e.isData else { return fail(.protocolViolation, "chunk for directory '\(name)'") }
        let (end, overflow) = h.offset.addingReportingOverflow(UInt64(h.length))
        guard !overflow else { return fail(.protocolViolation, "chunk at \(h.offset)+\(h.length) of '\(name)' is past any size") }
        if e.entry.kind == .file, end > e.entry.size {
            return fail(.protocolViolation, "chunk at \(h.offset)+\(h.length) is past the \(e.entry.size) bytes announced for '\(name)'")
        }
        // With parallel streams a chunk whose stream broke is sent again on
        // another, and may have arrived whole after all.
        if parallel, h.length > 0, e.received.contains(h.offset..<end) { return .discard(length: h.length) }
        guard e.trailer == nil || (parallel && !e.finishing) else {
            return fail(.protocolViolation, "chunk for '\(name)' after its trailer")
        }
        guard entries[i].received.insert(h.offset..<end) else {
            return fail(.protocolViolation, "chunk at \(h.offset)+\(h.length) of '\(name)' overlaps bytes already received")
        }
        if parallel { entries[i].pending += 1 }
        return .store(index: i, offset: h.offset, length: h.length)
    }

    private mutating func trailer(_ t: FileEnd) -> Action {
        guard let i = byID[t.fileID] else { return fail(.protocolViolation, "trailer for unknown file id \(t.fileID)") }
        let e = entries[i]
        let name = MessageName(path: e.path)
        guard e.isData else { return fail(.protocolViolation, "trailer for directory '\(name)'") }
        guard e.trailer == nil else { return fail(.protocolViolation, "second trailer for '\(name)'") }
        if e.entry.kind == .file, t.size != e.entry.size {
            return fail(.protocolViolation, "trailer says \(t.size) bytes for '\(name)' but the manifest said \(e.entry.size)")
        }
        if verify, t.digest == nil {
            return fail(.protocolViolation, "trailer for '\(name)' has no digest but verification is on")
        }
        if parallel {
            // Chunks on other streams may still be on their way.
            guard e.received.total <= t.size else {
                return fail(.protocolViolation, "'\(name)' has \(e.received.total) bytes but its trailer says \(t.size)")
            }
            entries[i].trailer = t
            return finishIfWhole(i)
        }
        guard e.received.contiguous == t.size, e.received.total == t.size else {
            return fail(.protocolViolation, "'\(name)' ended after \(e.received.total) of \(t.size) bytes")
        }
        entries[i].trailer = t
        return .finish(index: i)
    }

    private mutating func small(_ batch: SmallFiles) -> Action {
        var out: [SmallArrival] = []
        for f in batch.files {
            guard let i = byID[f.fileID] else { return fail(.protocolViolation, "small file for unknown file id \(f.fileID)") }
            let e = entries[i]
            let name = MessageName(path: e.path)
            guard e.entry.kind == .file else { return fail(.protocolViolation, "small-files frame for '\(name)', which is not a file") }
            guard e.trailer == nil, e.received.total == 0 else {
                return fail(.protocolViolation, "'\(name)' arrived whole after it had started")
            }
            guard UInt64(f.bytes.count) == e.entry.size else {
                return fail(.protocolViolation, "'\(name)' arrived with \(f.bytes.count) bytes but the manifest said \(e.entry.size)")
            }
            if verify, f.digest == nil {
                return fail(.protocolViolation, "'\(name)' has no digest but verification is on")
            }
            _ = entries[i].received.insert(0..<e.entry.size)
            entries[i].trailer = FileEnd(fileID: f.fileID, size: e.entry.size, digest: f.digest)
            out.append(SmallArrival(index: i, file: f))
        }
        return .storeSmall(out)
    }

    /// Entry `index` is committed (or failed, which ends the session anyway).
    public mutating func finished(index: Int, bytes: UInt64) -> Action {
        guard !entries[index].finished else { return .none }
        entries[index].finished = true
        unfinished -= 1
        committedFiles += 1
        committedBytes += bytes
        return sawEnd && unfinished == 0 ? complete() : .none
    }

    private mutating func complete() -> Action {
        phase = .finished
        return .complete(Done(files: committedFiles, bytes: committedBytes))
    }

    private mutating func fail(_ code: ErrorFrame.Code, _ message: String) -> Action {
        phase = .failed
        return .fail(ErrorFrame(code, message))
    }
}

extension ReceiverMachine.Phase: CustomStringConvertible {
    public var description: String {
        switch self {
        case .awaitingHello: return "awaiting hello"
        case .awaitingAuth: return "awaiting the code's proof"
        case .awaitingManifest: return "awaiting the manifest"
        case .reviewing: return "reviewing the manifest"
        case .awaitingResume: return "awaiting the resume decision"
        case .receiving: return "receiving"
        case .lane: return "carrying a data stream"
        case .finished: return "finished"
        case .failed: return "failed"
        }
    }
}
