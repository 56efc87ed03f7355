import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One push being received, after its handshake: drives its
/// `ReceiverMachine` with the frames of its own connection and the chunks
/// of its data streams, and carries out what it answers: each batch's
/// review, stores, verification and commits, links, acknowledgements, the
/// relay to a chain's next host. What it holds follows the batches in
/// flight, not the size of the push.
final class PushSession {
    unowned let connection: ReceiverSession
    let sender: Hello
    let features: Features
    var machine: ReceiverMachine
    var meter: ProgressMeter

    var sinks: [UInt32: FileSink] = [:]
    /// Partials from earlier pushes, offered in an answer, by entry id.
    var held: [UInt32: HeldPrefix] = [:]
    /// Copies of old files waiting to be patched (`--sync`).
    var copies: [UInt32: HeldCopy] = [:]
    /// Entries whose existing copy was offered by digest (`--checksum`):
    /// if the sender's content differs, replacing it needs --overwrite.
    var compared = Set<UInt32>()
    /// Files an adopted stage holds with their entry's size and mtime,
    /// offered by digest: moved into the new top if the sender's plan
    /// skips them (`moveAdopted`), else sent.
    var adopting: [UInt32: Adoption] = [:]
    /// Committed link sources: where their inode is, to link to it and to
    /// check nobody swapped it.
    var linkInodes: [UInt32: (dev: UInt64, ino: UInt64)] = [:]
    /// New top directories built under private names (`Stage`).
    var stages: [Stage] = []
    /// Bytes of small files the offload thread is writing (`storeSmall`).
    var smallBytesInFlight = 0
    /// The next frame is not read until those are under the cap.
    var readParked = false
    /// Bytes of holes left unwritten in the files of this push.
    var holeBytes: UInt64 = 0
    var digests: [(path: String, digest: Digest128)] = []
    var swept = Set<String>()
    var totals: Totals?
    var space = SpaceLedger()
    var startedEmitted = false
    /// A review that waits for the push's totals (a stdout receiver takes
    /// one entry only).
    var reviewWaitsForTotals: UInt32?
    /// Whether a failure keeps stored prefixes for a later resume.
    var keepPartials = true

    /// Directories this push made: the ones around the entry under review,
    /// and those whose subtree is announced, waiting for their batches'
    /// acknowledgements before their mode and mtime go on.
    var openDirs: [OpenDirectory] = []
    /// The paths of `openDirs` this push made, to ask "made here?" in one lookup.
    var madeOpenDirs = Set<PeerPath>()
    /// A batch whose review found a partial still locked, asked again on
    /// later ticks (up to `busyRetries` times, about 2 s).
    var busyReview: (batchID: UInt32, attempts: Int, at: UInt64)?
    static let busyRetries = 8

    /// Called on the loop's tick.
    func tick(_ now: UInt64) {
        if let b = busyReview, now >= b.at, !connection.isClosing { review(b.batchID) }
        link?.checkResolve()
    }

    /// Offload jobs still out that change what destination directories
    /// hold (`OffloadedWrites`): store and directory jobs, `--delete`'s
    /// prunes, the sweeps of stale partials, directory metadata. The
    /// push's `done` waits for the removals.
    let writes = OffloadedWrites()
    /// Where this push's removals and directory metadata run, in order
    /// among themselves, beside every other job (`Offload.serialQueue`):
    /// a prune of a million strays, or the metadata of thousands of
    /// directories on a disk busy with its journal, holds up neither the
    /// loop nor another session. Made with the push's first such job.
    lazy var ownQueue = server.offload.serialQueue("ft.offload.session\(id)")
    var deletedCount: UInt64 = 0
    var closedDirs: [(path: PeerPath, entry: ManifestEntry, batch: UInt32)] = []
    var acked = Set<UInt32>()
    var ackedThrough: UInt32 = 0
    var reviewingBatch: UInt32 = 0

    /// Chain push: the connection to the next host, and our `done` held
    /// until that host has answered.
    var link: RelayLink?
    var heldDone: Done?
    var reviewWaitsForLink: (batchID: UInt32, offers: [UInt32: BatchAnswer.Offer])?
    /// Answers reviewed here but not yet sent upstream, in batch order:
    /// each waits for the next host's answer to its batch (`RelayLink.mayAnswer`).
    var heldAnswers: [(batchID: UInt32, frames: [BatchAnswer])] = []

    /// This push's extra data streams.
    private(set) var streams: [ReceiverSession] = []
    static let maxStreams = DataStreamRules.maxStreams

    init(connection: ReceiverSession, version: UInt16, sender: Hello, features: Features) {
        self.connection = connection
        self.sender = sender
        self.features = features
        machine = ReceiverMachine(version: version, allowSensitive: connection.config.allowSensitive,
                                  links: connection.config.links, parallel: features.contains(.dataStreams))
        meter = ProgressMeter(session: connection.id, totalBytes: nil)
    }

    var server: ReceiverDriver { connection.server }
    var config: ReceiverConfig { server.config }
    var id: String { connection.id }
    var peer: String { connection.peer }
    var channel: FrameChannel { connection.channel }
    var streamCount: Int { streams.count }
    var encrypted: Bool { channel.cipher != nil }

    /// How payloads move from the socket to the file. stdout takes the copy
    /// path when verifying (the bytes must pass through memory to be hashed).
    var intakePath: PayloadIntake.Path {
        if encrypted { return .sealed }
        if link != nil { return .splice }
        if config.toStdout, machine.verify { return .copy }
        return streamPath
    }

    /// How payloads move on a data stream (and on a relayed push's
    /// connection when the push is not relayed after all).
    var streamPath: PayloadIntake.Path {
        switch config.path {
        case .copy: return .copy
        case .splice: return .splice
        case .auto: return machine.verify ? .copy : .splice
        }
    }

    var dataPath: String {
        switch intakePath {
        case .sealed: return "copy (encrypted, \(channel.cipher!.cipher))"
        case .splice where link != nil: return "splice+tee (relay)"
        case .splice: return ReceivePath.splice.rawValue
        case .copy: return ReceivePath.copy.rawValue
        }
    }

    // MARK: Frames

    func received(_ f: Frame) {
        relayForward(f)
        let action = machine.receive(f)
        act(action)
        // A payload follows a data header on the socket: the intake reads it
        // and asks for the next frame when it is in.
        switch action {
        case .store, .discard: break
        // Small files waiting for the offload lanes hold their bytes:
        // past the cap the socket waits (the sender's window fills), so
        // memory stays bounded however fast the sender is.
        case .storeSmall where smallBytesInFlight >= smallBytesCap: readParked = true
        default: if !connection.isClosing { connection.read() }
        }
    }

    /// Small files' bytes handed to the offload lanes and not yet written:
    /// half a frame's worth per lane (the check is made before a frame is
    /// handed on, so each lane still gets one to write while the next is
    /// read). A whole frame per lane held 1-2 MiB more of the receiver's
    /// peak RSS for no speed: `tools/bench-ab`, unpinned, 10,000 × 4 KiB
    /// (15 runs), 100,000 × 0.5-1 KiB (9) and /usr/share (7): wall 1.01,
    /// 1.00 and 1.02×; receiver peak RSS 29.9 → 28.2, 33.1 → 32.0 MiB.
    var smallBytesCap: Int { server.offload.lanes << 19 }

    /// Reads the next frame if `received` held it back for the cap.
    func resumeReading() {
        guard readParked, smallBytesInFlight < smallBytesCap, !connection.isClosing else { return }
        readParked = false
        connection.read()
    }

    func act(_ action: ReceiverMachine.Action) {
        switch action {
        case .none:
            break
        case .info(let info):
            if let e = server.policy.sessionLimitRefusal(active: server.activePushes) {
                fail(.refused(e, peer: peer), frame: e)
                return
            }
            if let busy = server.admit(connection) {
                fail(.refused(busy, peer: peer), frame: busy)
                return
            }
            if let why = unsupported(info.flags) {
                fail(.refused(ErrorFrame(.refused, why), peer: peer), frame: ErrorFrame(.refused, why))
                return
            }
            if info.entries != PushInfo.unknown { sized(Totals(entries: info.entries, bytes: info.bytes)) }
        case .totals(let t):
            sized(t)
        case .relay(let hops):
            startRelay(hops)
        case .review(let batchID):
            review(batchID)
        case .plan(let batchID, let items):
            applyPlan(batchID, items)
        case .store(let fileID, let offset, let length):
            store(fileID, offset, length, on: connection)
        case .discard(let length):
            connection.discard(length, path: intakePath)
        case .hole(let fileID, let range):
            hole(fileID, range)
        case .storeSmall(let arrivals):
            storeSmall(arrivals)
        case .finish(let fileID):
            finishAndSettle(fileID)
        case .link(let fileID, let sourcePath):
            if machine.info.flags.contains(.dryRun) {
                if machine.entry(fileID)?.finished == false { settle(fileID, .skipped) }
            } else {
                makeHardLink(fileID, to: sourcePath)
            }
        case .acknowledge(let ack):
            channel.enqueue(.batchAck(ack))
            channel.flush()
            batchAcknowledged(ack.batchID)
        case .complete(let done):
            pruneOpenDirectories()
            writes.whenNoRemovalsOut { [weak self] in
                guard let self, !connection.isClosing else { return }
                whole(done)
            }
        case .fail(let e):
            fail(.refused(e, peer: peer), frame: e)
        case .peerFailed(let e):
            fail(.peer(e, peer: peer), frame: nil)
        }
    }

    /// Every entry is in place and nothing more is removed: the directories
    /// get their metadata and the stages their names.
    private func whole(_ done: Done) {
        if stages.contains(where: { $0.old != nil }) {
            discardOldTops { [weak self] in
                guard let self, !connection.isClosing else { return }
                whole(done)
            }
            return
        }
        applyDirectoryMetadata(upTo: .max) { [weak self] in
            guard let self, !connection.isClosing else { return }
            do throws(IOError) { try publishStages() } catch {
                fail(.io(error), frame: TransferError.io(error).frame)
                return
            }
            if let link, !link.final {
                // Our copy is whole; `done` waits for the next host's news.
                heldDone = done
                return
            }
            complete(done)
        }
    }

    /// Carries out a list of actions in order, stopping if the push fails.
    func act(_ actions: [ReceiverMachine.Action]) {
        for a in actions {
            guard !connection.isClosing else { return }
            act(a)
        }
    }

    /// What of the push's asks this receiver does not do.
    private func unsupported(_ flags: PushInfo.Flags) -> String? {
        if flags.contains(.delete), !config.allowDelete {
            return "the sender asked to delete what its tree no longer has (--delete); this receiver does not allow that (run ft recv with --allow-delete)"
        }
        if flags.contains(.delete), machine.chain || config.toStdout {
            return "--delete is for a push into a directory, not a chain or stdout"
        }
        if flags.contains(.owner), geteuid() != 0 {
            logger.info("session \(id): the sender asked to keep owners; this receiver is not root, so files belong to it")
        }
        return nil
    }

    var logger: Logger { server.logger }

    /// The push's size is known: the bar's total, a first free-space check,
    /// and (stdout) a review that waited for it.
    private func sized(_ t: Totals) {
        totals = t
        meter.totalBytes = t.bytes
        let required = space.announce(t.bytes)
        if !config.toStdout, let free = try? server.destination.availableBytes(),
           let e = server.policy.spaceRefusal(needed: required, free: free) {
            fail(.refused(e, peer: peer), frame: e)
            return
        }
        if !startedEmitted {
            startedEmitted = true
            server.emit(.started(.init(session: id, peer: peer, files: Int(t.entries), directories: 0,
                                       totalBytes: t.bytes, skippedBytes: 0)))
        }
        if let b = reviewWaitsForTotals {
            reviewWaitsForTotals = nil
            review(b)
        }
    }

    /// Entry `fileID` is settled: its batch may be acknowledged, links may wait
    /// on it.
    func settle(_ fileID: UInt32, _ status: BatchAck.Status, digest: Digest128 = .zero, bytes: UInt64 = 0) {
        space.land(bytes)
        act(machine.settled(fileID, status, digest: digest, bytes: bytes))
    }

    private func batchAcknowledged(_ batchID: UInt32) {
        acked.insert(batchID)
        while acked.remove(ackedThrough + 1) != nil { ackedThrough += 1 }
        applyDirectoryMetadata(upTo: ackedThrough)
    }

    func advanceMeter(_ fileID: UInt32, _ s: FileSink, _ n: UInt64) {
        let size = machine.entry(fileID).flatMap { $0.entry.kind == .file ? $0.entry.size : nil }
        if let ev = meter.advance(by: n, path: s.display, fileBytes: s.stored.total, fileSize: size) {
            server.emit(ev)
        }
    }

    func complete(_ done: Done) {
        var done = done
        done.deleted = deletedCount
        if machine.chain { channel.enqueue(.report(HopReport(outcomes: link?.outcomes ?? []))) }
        channel.enqueue(.done(done))
        channel.flush()
        connection.succeeded = true
        let seconds = Double(monotonicNanoseconds() - connection.started) / 1e9
        var tally = ProgressEvent.Tally()
        tally.identicalFiles = done.skippedFiles
        tally.patchedFiles = done.patchedFiles
        tally.deleted = done.deleted
        tally.symlinks = done.symlinks
        tally.hardLinks = done.hardLinks
        tally.holeBytes = holeBytes
        tally.dryRun = machine.info.flags.contains(.dryRun)
        server.emit(.finished(.init(
            session: id, peer: peer, files: Int(done.files), directories: 0, bytes: done.bytes,
            skippedBytes: done.skippedBytes, seconds: seconds, verified: machine.verify, digests: digests,
            engine: EngineReport(backend: server.loop.backend.kind, dataPath: dataPath, stats: server.loop.stats), tally: tally)))
        connection.beginClose()
    }

    // MARK: Data streams

    /// Whether a data-stream hello naming `sessionID` from `host` joins.
    func takesDataStream(sessionID: [UInt8], host: String) -> Bool {
        machine.takesDataStreams && link == nil && !connection.isClosing && sender.sessionID == sessionID
            && host == connection.peerHost && streams.count < Self.maxStreams
    }

    func attach(_ s: ReceiverSession) { streams.append(s) }

    func detach(_ s: ReceiverSession) {
        streams.removeAll { $0 === s }
        connection.finishIfClosed()
    }

    /// A data frame on one of this push's streams.
    func dataStreamChunk(_ h: DataHeader, on stream: ReceiverSession) {
        connection.lastActivity = monotonicNanoseconds()
        switch machine.dataStreamChunk(h) {
        case .store(let fileID, let offset, let length):
            store(fileID, offset, length, on: stream)
        case .discard(let length):
            stream.discard(length, path: streamPath)
        case .fail(let e):
            fail(.refused(e, peer: peer), frame: e)
        default:
            stream.read()
        }
    }

    /// A chunk's stream broke before its payload was all in.
    func chunkLost(_ p: Payload) {
        machine.chunkLost(id: p.id, range: p.start..<p.start + p.length)
    }

    /// The push ends: its streams wind down. After `done` the sender closes
    /// them itself; closing them first would look like breaks.
    func closeStreams() {
        for s in streams { s.beginClose(shutWrite: connection.succeeded) }
    }

    // MARK: Ending

    /// Fails the push with `error`, from whichever of its connections.
    func fail(_ error: TransferError, frame: ErrorFrame?) {
        connection.fail(error, frame: frame)
    }

    /// The push's connection is failing: settle what arrived.
    func failing(_ error: TransferError) {
        keepPartials = server.policy.keepsPartials(after: error, chain: machine.chain)
        // Settle partial files now; their fds stay valid for ops in flight.
        for s in sinks.values { s.discard(keep: keepPartials) }
        // The next host's stream ends short: it fails too, and the sender
        // reaches it in a later pass.
        link?.fail("this host's own session failed: \(error.description)")
    }

    /// Nothing of ours is in flight on the streams or the next host.
    var mayEnd: Bool {
        guard streams.isEmpty else { return false }
        if let link { return link.final && link.inflight == 0 }
        return true
    }

    func ended() {
        if let link {
            link.release()
            self.link = nil
        }
        for s in sinks.values { s.discard(keep: keepPartials) }
        sinks.removeAll()
        held.removeAll()
        if !connection.succeeded { applyDirectoryMetadata(upTo: .max, cutOff: true) }
        for s in stages { s.close() }
        stages.removeAll()
    }
}

/// A directory of the push whose entries are still being announced.
struct OpenDirectory {
    var path: PeerPath
    var entry: ManifestEntry
    /// Made by this push (its metadata is applied once it is complete).
    var created: Bool
    /// Existing as a cut-off push of it left it (`DirectoryJob.isAsLeft`):
    /// its metadata is applied again once complete.
    var asLeft: Bool
    /// `--delete`, an existing directory: the names announced in it so
    /// far. Once it is complete, everything else in it goes.
    var keep: Set<[UInt8]>?
}
