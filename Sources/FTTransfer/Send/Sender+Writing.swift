import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// The sender's writes: the plans' steps as the scheduler hands them out,
/// on the push's own connection or its data streams.
extension Sender {
    /// Chunked files of a new plan that no buffer of ours sees whole go to
    /// the helper that hashes ahead: every one on the zero-copy paths, and
    /// on the others those whose bytes do not all pass through memory in
    /// order (a patch sends only changed chunks, a sparse file skips its
    /// holes). The rest are hashed in the buffer they are sent from.
    func startHashing(_ chunked: [UInt32], notWhole: Set<UInt32>) {
        guard config.verify else { return }
        let zeroCopy = !config.encrypt && (config.path == .sendfile || config.path == .splice)
        let ids = zeroCopy ? chunked : chunked.filter(notWhole.contains)
        guard !ids.isEmpty else { return }
        hashedAhead.formUnion(ids)
        if hashAhead == nil {
            let me = UncheckedBox(self)
            let offload = self.offload
            hashAhead = HashAhead { id, digest in
                offload.post { me.value.digestReady(id, digest) }
            }
        }
        var files: [HashAhead.File] = []
        var credit: UInt64 = 0
        for id in ids {
            guard let item = items[id], let path = item.localPath else { continue }
            files.append(HashAhead.File(id: id, path: path, size: item.entry.size, sparse: item.entry.flags.contains(.sparse)))
            // What is not sent (a resumed prefix, reused chunks) counts as
            // sent for the helper's read-ahead window.
            credit += item.entry.size - min(item.entry.size, plannedBytes[id] ?? item.entry.size)
        }
        hashAhead?.add(files)
        if credit > 0 { hashAhead?.sent(credit) }
    }

    func digestReady(_ id: UInt32, _ digest: Result<Digest128, IOError>) {
        readyDigests[id] = digest
        if awaitingDigest == id {
            awaitingDigest = nil
            pump()
        }
    }

    /// Starts the writes that can go now.
    func pump() {
        guard let conn = connection, failure == nil, writeError == nil, !done else { return }
        // The scheduler is used in place: starting stdin may come back here.
        while !done, failure == nil {
            let decision = scheduler.next(situation(conn))
            switch decision {
            case .wait:
                return
            case .flushControl:
                conn.channel.flush()
            case .pace(let ns):
                ownInflight += 1
                loop.backend.queue(.timeout(nanoseconds: ns), reg.userData(OpTag(.pace)))
                return
            case .chunk(let c, let stream):
                if unreadable.contains(c.id) { continue }
                if let stream {
                    streams[stream].send(c)
                } else {
                    startChunk(c, conn)
                }
            case .step(.stdin(let id)):
                stdin = StdinPump(fileID: id, verify: config.verify, sealed: conn.channel.cipher != nil,
                                  socket: conn.socket.fd, channel: conn.channel, peer: peer, loop: loop, reg: reg)
                stdinID = id
                if let p = stdin { stdinStep(p.step()) }
            case .step(.hole(let id, let offset, let length)):
                if !unreadable.contains(id) { conn.channel.enqueue(.hole(Hole(fileID: id, offset: offset, length: length))) }
            case .step(.fileEnd(let id)):
                if !fileEnd(id, conn) {
                    scheduler.putBack(.fileEnd(id: id))
                    return
                }
            case .step(.small(let ids)):
                sendSmall(ids, conn)
            case .step(.chunk):
                preconditionFailure("the scheduler hands out chunks as .chunk")
            case .end:
                // Chunks still on data streams are waited for by the
                // receiver, which holds a file's trailer until they are in.
                conn.channel.enqueue(.end)
                machine.endSent()
            }
        }
    }

    private func situation(_ conn: Connection) -> WriteScheduler.Situation {
        WriteScheduler.Situation(
            controlQueued: conn.channel.hasQueued && !conn.channel.writing,
            writeBusy: channelBusy(conn) || conn.writer.busy || stdin != nil || awaitingDigest != nil
                || smallReads?.busy == true,
            recordsLent: conn.writer.recordsLent,
            sending: machine.phase == .sending,
            idleStream: streams.firstIndex { $0.idle },
            streamsGone: streams.allSatisfy { $0.state == .dead },
            now: monotonicNanoseconds())
    }

    /// The data path as both sides' summaries name it.
    var sentDataPath: String {
        guard let c = connection?.channel.cipher else { return config.path.rawValue }
        return "copy (encrypted, \(c.cipher))"
    }

    /// Whether the push's own connection takes no more now. Sealed, every
    /// write goes through the channel in order, so the next record may be
    /// read and sealed while the last is sent, up to a backlog; otherwise
    /// a chunk goes to the socket itself, and not beside a write.
    private func channelBusy(_ conn: Connection) -> Bool {
        guard conn.channel.cipher != nil else { return conn.channel.writing }
        return conn.channel.writing && conn.channel.queuedCount >= StdinPump.sealedBacklog
    }

    /// Entry `id`'s file for the push's own connection, hashing what it
    /// reads unless a helper hashes ahead; nil (and the file left out) when
    /// it cannot be opened.
    func openSource(_ id: UInt32) -> SourceFile? {
        if let s = source, s.id == id { return s }
        guard let item = items[id] else { return nil }
        let fd: CInt
        do { fd = try SourceFile.open(item) } catch {
            leaveOut(id, error)
            return nil
        }
        let hasher = config.verify && !hashedAhead.contains(id) ? (resumeHashers.removeValue(forKey: id) ?? StreamHasher()) : nil
        let s = SourceFile(id: id, fd: fd, hasher: hasher)
        source = s
        return s
    }

    /// A file that cannot be read after all: its trailer says so, and the
    /// rest of the push goes on.
    func leaveOut(_ id: UInt32, _ error: TransferError) {
        guard unreadable.insert(id).inserted else { return }
        logger.warning("skipping \(items[id]?.displayPath ?? "file \(id)"): \(error.description)")
        tally.skipped["unreadable", default: 0] += 1
    }

    private func startChunk(_ c: FileChunk, _ conn: Connection) {
        guard let src = openSource(c.id), let item = items[c.id] else { return }
        // Sent at once (sealed without waiting): counted here, and the
        // pump's loop goes on, rather than coming back into it.
        if case .sent(let c) = conn.writer.start(c, from: src, fileID: c.id, name: item.displayPath, size: item.entry.size) {
            chunkOut(c)
        }
    }

    func writerEvent(_ e: ChunkWriter.Event) {
        switch e {
        case .none:
            return
        case .sent(let c):
            chunkOut(c)
            pump()
        case .bufferFree:
            pump()
        case .failed(let error, let wait):
            if wait { writeFailed(error) } else { finish(error) }
        }
    }

    /// A chunk is out on some connection: count it.
    func chunkOut(_ c: FileChunk) {
        if hashedAhead.contains(c.id) { hashAhead?.sent(UInt64(c.length)) }
        scheduler.chunkOut(c.length)
        if let item = items[c.id],
           let ev = meter.advance(by: UInt64(c.length), path: item.displayPath, fileBytes: c.offset + UInt64(c.length),
                                  fileSize: item.entry.size) {
            events(ev)
        }
    }

    /// Whole small files in one `small-files` frame: opened and checked
    /// here, read into staging (`SmallReads`: what is not in the page
    /// cache on the ring, many at once), then copied into the frame and
    /// hashed there. A file that cannot be read is left out of the frame
    /// and gets an "unreadable" trailer. While the ring reads, the pump
    /// waits (`writeBusy`).
    private func sendSmall(_ ids: [UInt32], _ conn: Connection) {
        let reads = smallReads ?? SmallReads(loop: loop)
        smallReads = reads
        var files: [SmallReads.File] = []
        files.reserveCapacity(ids.count)
        var lost: [UInt32] = []
        var at = 0
        for id in ids {
            guard let item = items[id] else { continue }
            do throws(TransferError) {
                let (fd, device) = try SourceFile.openWhole(item, via: smallParent)
                files.append(SmallReads.File(id: id, fd: fd, device: device, offset: at, size: Int(item.entry.size)))
                at += Int(item.entry.size)
            } catch {
                leaveOut(id, error)
                lost.append(id)
            }
        }
        reads.reserve(at)
        let inNow = reads.read(files) { [weak self] in
            guard let self else { return files.forEach { close($0.fd) } }
            smallRead(files, lost: lost, conn)
            pump()
        }
        if inNow { smallRead(files, lost: lost, conn) }
    }

    /// The frame's files are in staging: the frame goes out.
    private func smallRead(_ files: [SmallReads.File], lost: [UInt32], _ conn: Connection) {
        defer { for f in files { close(f.fd) } }
        guard let reads = smallReads, failure == nil, !done, connection === conn else { return }
        var lost = lost
        for f in files {
            guard let why = reads.failed[f.id] else { continue }
            let path = items[f.id]?.displayPath ?? "file \(f.id)"
            switch why {
            case .shrank: leaveOut(f.id, .source("'\(path)' shrank while being sent"))
            case .error(let e): leaveOut(f.id, .io(IOError(e, "read", path)))
            }
            lost.append(f.id)
        }
        let staging = UnsafeRawBufferPointer(reads.staging)
        let capacity = SmallFiles.bodySize(fileSizes: files.lazy.map(\.size))
        var total: UInt64 = 0
        conn.channel.enqueue(.smallFiles, bodyCapacity: capacity) { body in
            var batch = SmallFilesBuilder(body: body)
            for f in files where reads.failed[f.id] == nil {
                _ = batch.tryAdd(fileID: f.id, size: f.size) { content in
                    content.copyMemory(from: UnsafeRawBufferPointer(rebasing: staging[f.offset..<f.offset + f.size]))
                    guard config.verify else { return .some(nil) }
                    let digest = StreamHasher.hash(UnsafeRawBufferPointer(content))
                    sentDigests[f.id] = digest
                    return .some(digest)
                }
                total += UInt64(f.size)
            }
            return batch.length
        }
        for id in lost { conn.channel.enqueue(.fileEnd(FileEnd(fileID: id, size: 0, digest: nil, unreadable: true))) }
        scheduler.chunkOut(Int(total))
        if let last = files.last, let item = items[last.id],
           let ev = meter.advance(by: total, path: item.displayPath, fileBytes: item.entry.size, fileSize: item.entry.size) {
            events(ev)
        }
    }

    /// Queues entry `id`'s trailer; false while its digest is still being
    /// computed by the helper (the step waits for it).
    private func fileEnd(_ id: UInt32, _ conn: Connection) -> Bool {
        guard let item = items[id] else { return true }
        if unreadable.contains(id) {
            source = nil
            conn.channel.enqueue(.fileEnd(FileEnd(fileID: id, size: 0, digest: nil, unreadable: true)))
            return true
        }
        var size = item.entry.size
        var digest: Digest128?
        if item.entry.kind == .stdin {
            size = stdinResult?.size ?? 0
            digest = stdinResult?.digest
        } else {
            let ahead = hashedAhead.contains(id)
            if ahead {
                guard let result = readyDigests.removeValue(forKey: id) else {
                    awaitingDigest = id
                    return false
                }
                hashedAhead.remove(id)
                do { digest = try result.get() } catch {
                    leaveOut(id, .io(error))
                    conn.channel.enqueue(.fileEnd(FileEnd(fileID: id, size: 0, digest: nil, unreadable: true)))
                    return true
                }
            }
            guard let src = openSource(id) else {
                conn.channel.enqueue(.fileEnd(FileEnd(fileID: id, size: 0, digest: nil, unreadable: true)))
                return true
            }
            do {
                try SourceFile.checkUnchanged(src.fd, item)
            } catch {
                finish(error)
                return true
            }
            if !ahead { digest = src.hasher?.digest() }
            source = nil
        }
        if let digest { sentDigests[id] = digest }
        conn.channel.enqueue(.fileEnd(FileEnd(fileID: id, size: size, digest: digest)))
        if item.entry.size == 0, item.entry.kind == .file,
           let ev = meter.advance(by: 0, path: item.displayPath, fileBytes: 0, fileSize: 0) {
            events(ev)
        }
        return true
    }

    // MARK: stdin

    func stdinStep(_ e: StdinPump.Event) {
        guard let pump = stdin else { return }
        let out = pump.bytesOut
        if out > stdinCounted {
            let name = items[stdinID]?.displayPath ?? "stdin"
            if let ev = meter.advance(by: out - stdinCounted, path: name, fileBytes: out, fileSize: nil) { events(ev) }
            stdinCounted = out
        }
        switch e {
        case .none:
            break
        case .finished(let size, let digest):
            stdinResult = (size, digest)
            stdin = nil
            self.pump()
        case .failed(let error, let wait):
            if wait { writeFailed(error) } else { finish(error) }
        }
    }

    // MARK: Data streams (-P)

    func openStreams() {
        guard config.streams > 1 else { return }
        guard receiverFeatures.contains(.dataStreams) else {
            logger.warning("\(peer) takes one stream per push (an older ft, or it writes to stdout); -P \(config.streams) falls back to one")
            return
        }
        for n in 1...config.streams {
            do {
                streams.append(try DataStream(owner: self, number: n, address: addresses[addressIndex], sessionID: sessionID, code: code))
            } catch {
                logger.warning("could not open data stream \(n) to \(peer): \(error)")
            }
        }
    }
}

extension Sender: DataStreamOwner {
    func streamSource(_ id: UInt32) -> SourceFile? {
        if let s = streamSources[id] { return s }
        guard let item = items[id] else { return nil }
        do {
            let s = SourceFile(id: id, fd: try SourceFile.open(item), hasher: nil)
            streamSources[id] = s
            return s
        } catch {
            leaveOut(id, error)
            return nil
        }
    }

    func streamReady(_ stream: DataStream) {
        logger.debug("data stream \(stream.number) to \(peer) is ready")
        pump()
    }

    func streamSent(_ stream: DataStream, _ chunk: FileChunk) {
        chunkOut(chunk)
        pump()
    }

    func streamDied(_ stream: DataStream, _ why: String, lost: [FileChunk]) {
        guard !done else { return }
        let unacked = lost.filter { items[$0.id] != nil && !unreadable.contains($0.id) }
        logger.warning("data stream \(stream.number) to \(peer) broke (\(why)); \(unacked.count) of its chunks go again on the others")
        scheduler.resend(unacked)
        pump()
    }

    func streamSourceFailed(_ message: String) {
        finish(.source(message))
    }

    func streamActivity() {
        lastActivity = monotonicNanoseconds()
    }
}
