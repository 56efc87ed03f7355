import FTEngine
import FTWire

/// The sender's writes: the plan's steps as the scheduler hands them out,
/// on the push's own connection or its data streams.
extension Sender {
    /// The receiver accepted; `resume` says which offered prefixes to skip.
    func startData(offered: Bool, _ resume: ResumeCheck.Result) {
        guard let conn = connection else { return }
        resumeSkips = resume.skips
        resumeHashers = resume.hashers
        if offered {
            conn.channel.enqueue(.resume(Resume(skips: resumeSkips.map { Resume.Skip(fileID: $0.key, bytes: $0.value) })))
        }
        skipped = resumeSkips.values.reduce(0, +)
        meter.totalBytes = meter.totalBytes.map { $0 - min($0, skipped) }
        let plan = SendPlan(entries: items.map(\.entry), chunkSize: UInt32(chunkSize), skip: resumeSkips,
                            smallFiles: config.batchSmallFiles)
        scheduler = WriteScheduler(plan: plan, rateLimit: config.rateLimit)
        if config.verify, !config.encrypt, config.path == .sendfile || config.path == .splice {
            // sendfile and splice never bring the bytes into our memory:
            // hash them on a helper thread while the loop moves them. Small
            // files are hashed from the bytes already read for their batch;
            // only chunked files go to the helper, in the plan's order
            // (largest first), so its read-ahead follows what the loop sends.
            let files: [(index: Int, path: String, size: UInt64)] = plan.chunkedFiles.compactMap { i in
                guard case .file(let path) = items[i].origin else { return nil }
                return (i, path, items[i].entry.size)
            }
            let post = UncheckedBox(self)
            let offload = self.offload
            hashAhead = HashAhead(files: files) { index, digest in
                offload.post { post.value.digestReady(index, digest) }
            }
            // Skipped bytes count as sent for the helper's read-ahead window.
            hashAhead?.sent(skipped)
        }
        let files = items.filter { $0.entry.kind != .directory }.count
        events(.started(.init(session: "send", peer: peer, files: files, directories: items.count - files,
                              totalBytes: meter.totalBytes, skippedBytes: skipped)))
        openStreams()
        pump()
    }

    func digestReady(_ index: Int, _ digest: Result<Digest128, IOError>) {
        readyDigests[index] = digest
        if awaitingDigest == index {
            awaitingDigest = nil
            pump()
        }
    }

    /// Starts the writes that can go now.
    func pump() {
        guard let conn = connection, failure == nil, writeError == nil, !done else { return }
        guard scheduler != nil else {
            conn.channel.flush()
            return
        }
        // The scheduler is used in place: starting stdin may come back here.
        while !done, failure == nil, let decision = scheduler?.next(situation(conn)) {
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
                if let stream {
                    streams[stream].send(c)
                } else {
                    startChunk(c, conn)
                }
            case .step(.stdin(let index)):
                stdin = StdinPump(fileID: items[index].entry.fileID, verify: config.verify, sealed: conn.channel.cipher != nil,
                                  socket: conn.socket.fd, channel: conn.channel, peer: peer, loop: loop, reg: reg)
                stdinIndex = index
                stdinStep(stdin!.step())
            case .step(.fileEnd(let index)):
                if !fileEnd(index, conn) {
                    scheduler?.putBack(.fileEnd(index: index))
                    return
                }
            case .step(.small(let indexes)):
                sendSmall(indexes, conn)
            case .step(.end):
                // Chunks still on data streams are waited for by the
                // receiver, which holds a file's trailer until they are in.
                conn.channel.enqueue(.end)
                machine.endSent()
            case .step(.chunk):
                preconditionFailure("the scheduler hands out chunks as .chunk")
            }
        }
    }

    private func situation(_ conn: Connection) -> WriteScheduler.Situation {
        WriteScheduler.Situation(
            controlQueued: conn.channel.hasQueued,
            writeBusy: conn.channel.writing || conn.writer.busy || stdin != nil || awaitingDigest != nil,
            sending: machine.phase == .sending,
            idleStream: streams.firstIndex { $0.idle },
            streamsGone: streams.allSatisfy { $0.state == .dead },
            now: monotonicNanoseconds())
    }

    /// Entry `index`'s file for the push's own connection, hashing what it
    /// reads unless a helper hashes ahead.
    func openSource(_ index: Int) throws(TransferError) -> SourceFile {
        if let s = source, s.index == index { return s }
        let fd = try SourceFile.open(items[index])
        let fileID = items[index].entry.fileID
        let hasher = config.verify && hashAhead == nil ? (resumeHashers.removeValue(forKey: fileID) ?? StreamHasher()) : nil
        let s = SourceFile(index: index, fd: fd, hasher: hasher)
        source = s
        return s
    }

    private func startChunk(_ c: FileChunk, _ conn: Connection) {
        let src: SourceFile
        do { src = try openSource(c.index) } catch {
            finish(error)
            return
        }
        let item = items[c.index]
        conn.writer.start(c, from: src, fileID: item.entry.fileID, name: item.displayPath, size: item.entry.size)
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
        hashAhead?.sent(UInt64(c.length))
        scheduler?.chunkOut(c.length)
        if let ev = meter.advance(by: UInt64(c.length), path: items[c.index].displayPath, fileBytes: c.offset + UInt64(c.length),
                                  fileSize: items[c.index].entry.size) {
            events(ev)
        }
    }

    /// Whole small files in one `small-files` frame, each read straight
    /// into the frame being queued and hashed there.
    private func sendSmall(_ indexes: [Int], _ conn: Connection) {
        let capacity = SmallFiles.bodySize(fileSizes: indexes.lazy.map { Int(self.items[$0].entry.size) })
        var total: UInt64 = 0
        do {
            try conn.channel.enqueue(.smallFiles, bodyCapacity: capacity) { body throws(TransferError) in
                var batch = SmallFilesBuilder(body: body)
                for i in indexes {
                    let item = items[i]
                    try batch.add(fileID: item.entry.fileID, size: Int(item.entry.size)) { content throws(TransferError) in
                        try SourceFile.readWhole(item, into: content)
                        guard config.verify else { return nil }
                        let digest = StreamHasher.hash(UnsafeRawBufferPointer(content))
                        sentDigests[i] = digest
                        return digest
                    }
                    total += item.entry.size
                }
                return batch.length
            }
        } catch {
            finish(error)
            return
        }
        if let last = indexes.last, let ev = meter.advance(by: total, path: items[last].displayPath, fileBytes: items[last].entry.size,
                                                            fileSize: items[last].entry.size) {
            events(ev)
        }
    }

    /// Queues entry `index`'s trailer; false while its digest is still
    /// being computed by the helper (the step waits for it).
    private func fileEnd(_ index: Int, _ conn: Connection) -> Bool {
        let item = items[index]
        var size = item.entry.size
        var digest: Digest128?
        if item.entry.kind == .stdin {
            size = stdinResult?.size ?? 0
            digest = stdinResult?.digest
        } else {
            if hashAhead != nil {
                guard let result = readyDigests.removeValue(forKey: index) else {
                    awaitingDigest = index
                    return false
                }
                do { digest = try result.get() } catch {
                    finish(.io(error))
                    return true
                }
            }
            do {
                let src = try openSource(index)
                try SourceFile.checkUnchanged(src.fd, item)
                if hashAhead == nil { digest = src.hasher?.digest() }
            } catch {
                finish(error)
                return true
            }
            source = nil
        }
        if let digest { sentDigests[index] = digest }
        conn.channel.enqueue(.fileEnd(FileEnd(fileID: item.entry.fileID, size: size, digest: digest)))
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
            let index = stdinIndex
            if let ev = meter.advance(by: out - stdinCounted, path: items[index].displayPath, fileBytes: out, fileSize: nil) { events(ev) }
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
    func streamSource(_ index: Int) -> (file: SourceFile, fileID: UInt32)? {
        let fileID = items[index].entry.fileID
        if let s = streamSources[index] { return (s, fileID) }
        do {
            let s = SourceFile(index: index, fd: try SourceFile.open(items[index]), hasher: nil)
            streamSources[index] = s
            return (s, fileID)
        } catch {
            finish(error)
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
        let unacked = lost.filter { !machine.isAcknowledged($0.index) }
        logger.warning("data stream \(stream.number) to \(peer) broke (\(why)); \(unacked.count) of its chunks go again on the others")
        scheduler?.resend(unacked)
        pump()
    }

    func streamSourceFailed(_ message: String) {
        finish(.source(message))
    }

    func streamActivity() {
        lastActivity = monotonicNanoseconds()
    }
}
