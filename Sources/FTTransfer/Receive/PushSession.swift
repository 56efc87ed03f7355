import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One push being received, after its handshake: drives its
/// `ReceiverMachine` with the frames of its own connection and the chunks
/// of its data streams, and carries out what it answers: review, stores,
/// verification and commits, the relay to a chain's next host.
final class PushSession {
    unowned let connection: ReceiverSession
    let sender: Hello
    let features: Features
    var machine: ReceiverMachine
    var meter: ProgressMeter

    var sinks: [Int: FileSink] = [:]
    /// Partials from earlier pushes, offered in `accept`, by entry index.
    var held: [Int: HeldPrefix] = [:]
    var createdDirectories: [Int] = []
    var directoryCache: [PeerPath: Directory] = [:]
    var swept = Set<String>()
    var digests: [(path: String, digest: Digest128)] = []
    var skippedBytes: UInt64 = 0
    /// Whether a failure keeps stored prefixes for a later resume.
    var keepPartials = true

    /// Chain push: the connection to the next host, and our `done` held
    /// until that host has answered.
    var link: RelayLink?
    var heldDone: Done?
    var reviewWaitsForLink = false

    /// This push's extra data streams.
    private(set) var streams: [ReceiverSession] = []
    static let maxStreams = DataStreamRules.maxStreams

    init(connection: ReceiverSession, version: UInt16, sender: Hello, features: Features) {
        self.connection = connection
        self.sender = sender
        self.features = features
        machine = ReceiverMachine(version: version, allowSensitive: connection.config.allowSensitive,
                                  parallel: features.contains(.dataStreams))
        meter = ProgressMeter(session: connection.id, totalBytes: nil)
    }

    var server: Receiver { connection.server }
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
        return config.path == .copy ? .copy : .splice
    }

    var dataPath: String {
        switch intakePath {
        case .sealed: return "copy (encrypted)"
        case .splice where link != nil: return "splice+tee (relay)"
        case .splice: return ReceivePath.splice.rawValue
        case .copy: return ReceivePath.copy.rawValue
        }
    }

    // MARK: Frames

    func received(_ f: Frame) {
        relayForward(f)
        act(machine.receive(f))
    }

    func act(_ action: ReceiverMachine.Action) {
        switch action {
        case .none:
            connection.read()
        case .review:
            if let e = server.policy.sessionLimitRefusal(active: server.activePushes) {
                fail(.refused(e, peer: peer), frame: e)
                return
            }
            server.admit(connection)
            review()
        case .relay(let hops):
            startRelay(hops)
        case .resume(let keep, let drop):
            for i in drop {
                // The held fd closes with the HeldPrefix; its bytes go.
                if held.removeValue(forKey: i) != nil, let dir = try? parentDirectory(of: machine.entries[i].path) {
                    Partial(machine.entries[i].entry).remove(in: dir)
                }
            }
            skippedBytes = keep.reduce(0) { $0 + $1.bytes }
            announceStart()
            connection.read()
        case .store(let index, let offset, let length):
            store(index, offset, length, on: connection)
        case .discard(let length):
            connection.discard(length, path: intakePath)
        case .storeSmall(let arrivals):
            do throws(TransferError) {
                for a in arrivals { try storeWhole(a) }
            } catch {
                fail(error, frame: error.frame)
                return
            }
            channel.flush()
            var next = ReceiverMachine.Action.none
            for a in arrivals { next = machine.finished(index: a.index, bytes: UInt64(a.file.bytes.count)) }
            if case .complete = next { act(next) } else { connection.read() }
        case .finish(let index):
            guard finishAndAcknowledge(index) else { return }
            connection.read()
        case .complete(let done):
            applyDirectoryMetadata()
            if let link, !link.final {
                // Our copy is whole; `done` waits for the next host's news.
                heldDone = done
                return
            }
            complete(done)
        case .fail(let e):
            fail(.refused(e, peer: peer), frame: e)
        case .peerFailed(let e):
            fail(.peer(e, peer: peer), frame: nil)
        }
    }

    /// Verifies and commits entry `index`, and completes the push if that
    /// was the last; false if the session failed.
    @discardableResult
    func finishAndAcknowledge(_ index: Int) -> Bool {
        do throws(TransferError) {
            try finish(index)
        } catch {
            fail(error, frame: error.frame)
            return false
        }
        let next = machine.finished(index: index, bytes: machine.entries[index].trailer?.size ?? 0)
        if case .complete = next {
            act(next)
            return false
        }
        return true
    }

    private func store(_ index: Int, _ offset: UInt64, _ length: UInt32, on conn: ReceiverSession) {
        let sink: FileSink
        do throws(TransferError) {
            sink = try self.sink(for: index)
        } catch {
            fail(error, frame: error.frame)
            return
        }
        let path: PayloadIntake.Path = conn === connection ? intakePath : (config.path == .copy ? .copy : .splice)
        conn.store(Payload(index: index, sink: sink, start: offset, length: UInt64(length)), path: path,
                   relay: conn === connection ? link : nil)
    }

    /// A payload is in its file.
    func payloadDone(_ p: Payload) {
        if machine.parallel, case .finish(let i) = machine.chunkStored(index: p.index) {
            finishAndAcknowledge(i)
        }
    }

    func advanceMeter(_ index: Int, _ s: FileSink, _ n: UInt64) {
        let e = machine.entries[index]
        if let ev = meter.advance(by: n, path: s.display, fileBytes: s.stored.total,
                                  fileSize: e.entry.kind == .file ? e.entry.size : nil) {
            server.emit(ev)
        }
    }

    func announceStart() {
        let files = machine.entries.filter(\.isData).count
        meter.totalBytes = meter.totalBytes.map { $0 - min($0, skippedBytes) }
        server.emit(.started(.init(
            session: id, peer: peer, files: files, directories: machine.entries.count - files,
            totalBytes: meter.totalBytes, skippedBytes: skippedBytes)))
    }

    func sendAccept() {
        let offered = held.sorted { $0.key < $1.key }.map {
            Accept.Have(fileID: machine.entries[$0.key].entry.fileID, bytes: $0.value.bytes, digest: $0.value.digest)
        }
        machine.accepted(offering: offered)
        channel.enqueue(.accept(Accept(have: offered)))
        channel.flush()
        if offered.isEmpty { announceStart() }
        connection.read()
    }

    func complete(_ done: Done) {
        if machine.chain { channel.enqueue(.report(HopReport(outcomes: link?.outcomes ?? []))) }
        channel.enqueue(.done(done))
        channel.flush()
        connection.succeeded = true
        let seconds = Double(monotonicNanoseconds() - connection.started) / 1e9
        let dirs = machine.entries.filter { !$0.isData }.count
        server.emit(.finished(.init(
            session: id, peer: peer, files: Int(done.files), directories: dirs, bytes: done.bytes,
            skippedBytes: skippedBytes, seconds: seconds, verified: machine.verify, digests: digests,
            engine: EngineReport(backend: server.loop.backend.kind, dataPath: dataPath, stats: server.loop.stats))))
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
        case .store(let index, let offset, let length):
            store(index, offset, length, on: stream)
        case .discard(let length):
            stream.discard(length, path: config.path == .copy ? .copy : .splice)
        case .fail(let e):
            fail(.refused(e, peer: peer), frame: e)
        default:
            stream.read()
        }
    }

    /// A chunk's stream broke before its payload was all in.
    func chunkLost(_ p: Payload) {
        machine.chunkLost(index: p.index, range: p.start..<p.start + p.length)
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
    }
}
