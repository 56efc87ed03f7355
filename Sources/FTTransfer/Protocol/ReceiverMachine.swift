import FTWire

/// A small file that arrived whole, for entry `index`.
public struct SmallArrival: Equatable, Sendable {
    public var index: Int
    public var file: SmallFiles.File
    public init(index: Int, file: SmallFiles.File) {
        self.index = index
        self.file = file
    }
}

/// A prefix of a file the receiver held and the sender chose not to resend.
public struct ResumedPrefix: Equatable, Sendable {
    public var index: Int
    public var bytes: UInt64
    public init(index: Int, bytes: UInt64) {
        self.index = index
        self.bytes = bytes
    }
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

/// The receiver's protocol logic for one push, after the handshake, with no
/// I/O: it is fed frames and reports of finished work, and answers with
/// what to do next. Everything a peer can get wrong is caught here, before
/// the driver touches a file.
public struct ReceiverMachine: Sendable {
    public enum Phase: Equatable, Sendable {
        case awaitingManifest
        case reviewing
        case awaitingResume
        case receiving
        case finished
        case failed
    }

    public enum Action: Equatable, Sendable {
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

    /// Where the push stands, and what only that stage needs.
    private enum State: Sendable {
        case collecting(announced: [ManifestEntry])
        case reviewing
        case awaitingResume(offered: [Accept.Have])
        case receiving(sawEnd: Bool)
        case finished
        case failed
    }

    private var state = State.collecting(announced: [])
    /// The reviewed entries; empty until the manifest is complete.
    public private(set) var entries: [IncomingEntry] = []
    private var byID: [UInt32: Int] = [:]
    private var unfinished = 0
    private var committedBytes: UInt64 = 0
    private var committedFiles: UInt64 = 0
    public let version: UInt16
    let maxEntries: Int
    let allowSensitive: Bool
    /// The manifest did not ask to skip verification.
    public private(set) var verify = true
    /// Part of a chain push: no resume offers (each host gets the whole
    /// stream), and a `report` goes before `done`.
    public private(set) var chain = false
    /// The push may add data streams (agreed in the hello): chunks may
    /// arrive out of order, after their file's trailer, or again after a
    /// stream broke.
    public let parallel: Bool

    public init(version: UInt16 = ProtocolVersion.max, maxEntries: Int = Manifest.maxEntries, allowSensitive: Bool = false,
                parallel: Bool = false) {
        self.version = version
        self.maxEntries = maxEntries
        self.allowSensitive = allowSensitive
        self.parallel = parallel
    }

    public var phase: Phase {
        switch state {
        case .collecting: return .awaitingManifest
        case .reviewing: return .reviewing
        case .awaitingResume: return .awaitingResume
        case .receiving: return .receiving
        case .finished: return .finished
        case .failed: return .failed
        }
    }

    /// Whether a data stream may join now.
    public var takesDataStreams: Bool { parallel && phase == .receiving }

    public mutating func receive(_ frame: Frame) -> Action {
        if case .error(let e) = frame {
            state = .failed
            return .peerFailed(e)
        }
        switch (state, frame) {
        case (.collecting(let announced), .relay(let r)) where !chain && announced.isEmpty:
            chain = true
            return .relay(r.hops)
        case (.collecting(var announced), .manifest(let list)):
            guard announced.count + list.count <= maxEntries else {
                return fail(.refused, "manifest has more than \(maxEntries) entries")
            }
            state = .reviewing  // drops the array's other reference before it grows
            announced.append(contentsOf: list)
            state = .collecting(announced: announced)
            return .none
        case (.collecting(let announced), .manifestEnd(let end)):
            return review(announced, end)
        case (.awaitingResume(let offered), .resume(let r)):
            return resume(r, offered: offered)
        case (.receiving, .data(let h)):
            return data(h)
        case (.receiving, .fileEnd(let t)):
            return trailer(t)
        case (.receiving, .smallFiles(let batch)):
            return small(batch)
        case (.receiving, .end):
            state = .receiving(sawEnd: true)
            let missing = entries.filter { $0.isData && $0.trailer == nil }.count
            guard missing == 0 else {
                return fail(.protocolViolation, "push ended with \(missing) files never finished")
            }
            return unfinished == 0 ? complete() : .none
        default:
            return fail(.protocolViolation, "unexpected \(frame.type) frame while \(phase)")
        }
    }

    private mutating func review(_ announced: [ManifestEntry], _ end: ManifestEnd) -> Action {
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
            let name = MessageName(path: path)
            if !allowSensitive, let sensitive = path.sensitiveComponent {
                return fail(.refused, "refusing '\(name)': '\(sensitive)' holds logins or start-up scripts (run ft recv with --allow-sensitive to accept it)")
            }
            guard byID[e.fileID] == nil else {
                return fail(.protocolViolation, "file id \(e.fileID) announced twice")
            }
            guard seen[path] == nil else {
                return fail(.refused, "'\(name)' announced twice")
            }
            seen[path] = e.kind
            if e.kind == .file {
                let (sum, overflow) = total.addingReportingOverflow(e.size)
                guard !overflow, e.size <= UInt64(Int64.max) else {
                    return fail(.refused, "'\(name)' has an impossible size \(e.size)")
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
                    return fail(.refused, "'\(MessageName(path: e.path))' needs '\(MessageName(path: p))' to be a directory, but it is announced as a file")
                }
                parent = p.parent
            }
        }
        guard total == end.totalBytes else {
            return fail(.protocolViolation, "manifest-end says \(end.totalBytes) bytes but the entries add up to \(total)")
        }
        verify = !end.flags.contains(.noVerify)
        state = .reviewing
        return .review
    }

    /// A data frame that arrived on one of this push's extra streams.
    public mutating func dataStreamChunk(_ h: DataHeader) -> Action {
        guard parallel, phase == .receiving else {
            return fail(.protocolViolation, "a data stream sent a chunk while the push is \(phase)")
        }
        if let i = byID[h.fileID], entries[i].entry.kind == .stdin {
            return fail(.protocolViolation, "stdin content came on an extra data stream")
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
        state = have.isEmpty ? .receiving(sawEnd: false) : .awaitingResume(offered: have)
        for i in entries.indices where !entries[i].isData { entries[i].finished = true }
    }

    private mutating func resume(_ r: Resume, offered: [Accept.Have]) -> Action {
        var keep: [ResumedPrefix] = []
        var kept = Set<UInt32>()
        for skip in r.skips {
            guard let have = offered.first(where: { $0.fileID == skip.fileID }), have.bytes == skip.bytes,
                  kept.insert(skip.fileID).inserted, let i = byID[skip.fileID] else {
                return fail(.protocolViolation, "resume of file id \(skip.fileID) at \(skip.bytes) bytes was not offered")
            }
            _ = entries[i].received.insert(0..<skip.bytes)
            keep.append(ResumedPrefix(index: i, bytes: skip.bytes))
        }
        let drop = offered.filter { !kept.contains($0.fileID) }.compactMap { byID[$0.fileID] }
        state = .receiving(sawEnd: false)
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

    /// Entry `index` is committed (a failure ends the session anyway).
    public mutating func finished(index: Int, bytes: UInt64) -> Action {
        guard !entries[index].finished else { return .none }
        entries[index].finished = true
        unfinished -= 1
        committedFiles += 1
        committedBytes += bytes
        guard case .receiving(let sawEnd) = state, sawEnd, unfinished == 0 else { return .none }
        return complete()
    }

    private mutating func complete() -> Action {
        state = .finished
        return .complete(Done(files: committedFiles, bytes: committedBytes))
    }

    private mutating func fail(_ code: ErrorFrame.Code, _ message: String) -> Action {
        state = .failed
        return .fail(ErrorFrame(code, message))
    }
}

extension ReceiverMachine.Phase: CustomStringConvertible {
    public var description: String {
        switch self {
        case .awaitingManifest: return "waiting for the manifest"
        case .reviewing: return "reviewing the manifest"
        case .awaitingResume: return "waiting for the resume decision"
        case .receiving: return "receiving"
        case .finished: return "finished"
        case .failed: return "failed"
        }
    }
}
