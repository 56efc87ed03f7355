import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What the sender does with the receiver's frames and the scanner's
/// batches: the handshake's steps, announcing batches, deciding on the
/// receiver's offers, acknowledgements and the end.
extension Sender {
    func received(_ f: Frame) {
        guard let conn = connection else { return }
        guard established else {
            let step = handshake.receive(f)
            for frame in step.send { conn.channel.enqueue(frame) }
            switch step.outcome {
            case .waiting:
                pump()
            case .established(let e):
                established = true
                receiverFeatures = e.receiverFeatures
                if e.unauthenticated { logger.warning("\(peer) accepts anyone (--no-auth); the code was not needed") }
                if let keys = e.keys {
                    // Both proofs are in: everything from here on is sealed
                    // or tagged. The receiver sends nothing after its proof
                    // until our first batch, so nothing may wait in the
                    // read-ahead that was read as plain frames.
                    guard !conn.channel.hasBufferedInput else {
                        finish(.protocolViolation("the receiver sent more after its proof", peer: peer))
                        return
                    }
                    conn.channel.bind(keys, role: .sender, cipher: e.cipher, tags: e.tags)
                }
                startPush(conn)
            case .failed(let why):
                handshakeFailed(why, conn)
                return
            }
            if !done, failure == nil { conn.channel.read() }
            return
        }
        act(machine.receive(f))
        if !done, failure == nil { conn.channel.read() }
    }

    private func handshakeFailed(_ why: SenderHandshake.Failure, _ conn: Connection) {
        switch why {
        case .needCode:
            // Tell the receiver why we leave, directly: finish() closes at once.
            let bytes = FrameCodec.encode(.error(ErrorFrame(.auth, "the sender has no code (FT_CODE or --code-file)")))
            _ = bytes.withUnsafeBytes { send(conn.socket.fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            finish(.peer(ErrorFrame(.auth, "it requires its one-time code: run ft send with FT_CODE=CODE or --code-file FILE (ft recv printed the code)"), peer: peer))
        case .receiverUnproven:
            finish(.peer(ErrorFrame(.auth, "it could not prove it knows the code: a wrong code, or not the receiver you meant"), peer: peer))
        case .receiverTakesAnyone:
            finish(.source("\(peer) accepts anyone (--no-auth), so there is no code to make keys from; --encrypt needs a receiver with a code"))
        case .refused(let e):
            finish(.peer(e, peer: peer))
        case .cipher(let m):
            let chose = m.accepted.map(\.rawValue).joined(separator: ", ")
            let offered = m.offered.map(\.rawValue).joined(separator: ", ")
            finish(.protocolViolation("it chose \(chose) to seal the push, which this side did not offer (\(offered)); run ft send with --cipher to match ft recv's", peer: peer))
        case .violation(let s):
            finish(.protocolViolation(s, peer: peer))
        }
    }

    /// The handshake is done: say what the push asks, and start the walk.
    private func startPush(_ conn: Connection) {
        if let hops = config.relay { conn.channel.enqueue(.relay(Relay(hops: hops))) }
        var flags: PushInfo.Flags = config.verify ? [] : .noVerify
        if config.owner { flags.insert(.owner) }
        if config.sync || config.checksum { flags.insert(.sync) }
        if config.checksum { flags.insert(.checksum) }
        if config.delete { flags.insert(.delete) }
        if config.dryRun { flags.insert(.dryRun) }
        conn.channel.enqueue(.pushInfo(PushInfo(flags: flags)))
        let me = UncheckedBox(self)
        let offload = self.offload
        var options = ScanOptions()
        options.stdinName = config.stdinName
        options.links = config.links
        options.owner = config.owner
        options.filter = config.filter
        let s = TreeScanner(roots: roots.roots, options: options, window: Self.window) { out in
            offload.post { me.value.scanned(out) }
        }
        scanner = s
        s.start()
        openStreams()
        pump()
    }

    /// The scanner handed something out (on the loop thread).
    func scanned(_ out: TreeScanner.Output) {
        guard !done, let conn = connection else { return }
        switch out {
        case .warning(let w):
            logger.warning("\(w)")
        case .batch(let b):
            var ids: [UInt32] = []
            ids.reserveCapacity(b.items.count)
            for i in b.items.indices {
                ids.append(b.items[i].entry.fileID)
                switch b.items[i].entry.kind {
                case .directory: directories += 1
                case .file, .stdin: dataFiles += 1
                default: break
                }
            }
            items.add(b)
            lastBatch = b.id
            machine.announced(b.id, ids: ids)
            conn.channel.enqueue(.batch(Batch(batchID: b.id, entries: b.items.map(\.entry))))
        case .finished(let totals, let skippedEntries):
            scanTotals = totals
            if skippedEntries.symlinks > 0 { tally.skipped["symlink"] = skippedEntries.symlinks }
            if skippedEntries.special > 0 { tally.skipped["special"] = skippedEntries.special }
            if skippedEntries.unreadable > 0 { tally.skipped["unreadable"] = skippedEntries.unreadable }
            if skippedEntries.badNames > 0 { tally.skipped["name"] = skippedEntries.badNames }
            if skippedEntries.excluded > 0 { tally.skipped["excluded"] = skippedEntries.excluded }
            let hasStdin = roots.roots.contains { $0.local == nil }
            meter.totalBytes = hasStdin ? nil : totals.bytes
            conn.channel.enqueue(.totals(totals))
            events(.started(.init(session: sessionLabel, peer: peer, files: dataFiles, directories: directories,
                                  totalBytes: meter.totalBytes, skippedBytes: 0)))
            if batchesPlanned == lastBatch { scheduler.allPlanned() }
        }
        pump()
    }

    func act(_ action: SenderMachine.Action) {
        switch action {
        case .none:
            break
        case .answered(let batchID, let offers):
            answered(batchID, offers)
        case .acknowledged(let batchID, let results):
            acknowledged(batchID, results)
        case .complete(let d):
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            tally.identicalFiles = config.dryRun ? dryRunCounts.identical : d.skippedFiles
            tally.patchedFiles = config.dryRun ? dryRunCounts.patched : d.patchedFiles
            tally.dryRun = config.dryRun
            tally.deleted = d.deleted
            tally.symlinks = d.symlinks
            tally.hardLinks = d.hardLinks
            // What the receiver wrote, not what was offered: files it had are
            // in the tally.
            summary = .init(session: sessionLabel, peer: peer, files: config.dryRun ? Int(dryRunCounts.files) : Int(d.files),
                            directories: directories, bytes: config.dryRun ? dryRunCounts.bytes : d.bytes, skippedBytes: d.skippedBytes, seconds: seconds, verified: config.verify,
                            digests: agreed,
                            engine: EngineReport(backend: loop.backend.kind, dataPath: sentDataPath, stats: loop.stats),
                            relayed: relayed, tally: tally)
            if let cold = smallReads?.coldFiles, cold > 0 {
                logger.debug("\(cold) small \(cold == 1 ? "file was" : "files were") not in the page cache: read on the ring, up to \(SmallReads.lanes) at once")
            }
            if let ev = meter.closing() { events(ev) }
            events(.finished(summary!))
            finish(nil)
        case .hopReport(let r):
            relayed = r.outcomes
        case .peerFailed(let e):
            finish(.peer(e, peer: peer))
        case .violation(let s):
            finish(.protocolViolation(s, peer: peer))
        }
    }

    // MARK: Answers and plans

    private func answered(_ batchID: UInt32, _ offers: [BatchAnswer.Item]) {
        deciding.append(batchID)
        // Entries the receiver has, identical: nothing of them is sent.
        for o in offers where o.offer == .identical { identicalIDs.insert(o.fileID) }
        let needing = offers.filter { if case .identical = $0.offer { return false } else { return true } }
        guard !needing.isEmpty else {
            decided[batchID] = []
            drainDecisions()
            return
        }
        let pairs = needing.compactMap { o in items[o.fileID].map { ($0, o.offer) } }
        // Hashing our side of each offer may read gigabytes: off the loop.
        offload.run({ OfferCheck.decide(pairs) }) { [self] result in
            guard !done else { return }
            for name in result.differing {
                logger.info("'\(name)': the receiver's copy differs from this file; sending it whole")
            }
            resumeHashers.merge(result.hashers) { $1 }
            patchChunks.merge(result.chunkSizes) { $1 }
            decided[batchID] = result.items
            drainDecisions()
        }
    }

    /// Plans go out, and their writes queue up, in batch order.
    private func drainDecisions() {
        guard let conn = connection else { return }
        while let batchID = deciding.first, let decisions = decided.removeValue(forKey: batchID) {
            deciding.removeFirst()
            var byID: [UInt32: BatchPlan.Decision] = [:]
            for d in decisions { byID[d.fileID] = d.decision }
            if config.dryRun {
                // The receiver settles the batch without data: say what
                // would travel, and send nothing.
                reportDryRun(batchID, byID)
                scheduler.add(SendPlan(files: [], chunkSize: UInt32(chunkSize), smallFiles: config.batchSmallFiles))
                batchesPlanned = batchID
                if scanTotals != nil, batchesPlanned == lastBatch { scheduler.allPlanned() }
                continue
            }
            if !decisions.isEmpty { conn.channel.enqueue(.plan(BatchPlan(batchID: batchID, items: decisions))) }
            var files: [FileSend] = []
            var notWhole = Set<UInt32>()
            let all = items.items(of: batchID)
            // A first push of a tree has no identical entries and no
            // decisions: empty tables are not asked, a hash per file each.
            let (anyIdentical, anyDecided) = (!identicalIDs.isEmpty, !byID.isEmpty)
            for i in all.indices {
                let id = all[i].entry.fileID
                let decision = anyIdentical && identicalIDs.remove(id) != nil ? .skip : (anyDecided ? (byID[id] ?? .whole) : .whole)
                if case .patch = decision { notWhole.insert(id) }
                if all[i].entry.flags.contains(.sparse) { notWhole.insert(id) }
                if let f = fileSend(all[i], decision) { files.append(f) }
            }
            let plan = SendPlan(files: files, chunkSize: UInt32(chunkSize), smallFiles: config.batchSmallFiles)
            scheduler.add(plan)
            startHashing(plan.chunkedFiles, notWhole: notWhole)
            batchesPlanned = batchID
            if scanTotals != nil, batchesPlanned == lastBatch { scheduler.allPlanned() }
        }
        pump()
    }

    /// `--dry-run`: one line per file that would travel, and the counts.
    private func reportDryRun(_ batchID: UInt32, _ byID: [UInt32: BatchPlan.Decision]) {
        for item in items.items(of: batchID) {
            guard item.entry.kind == .file || item.entry.kind == .stdin else { continue }
            let id = item.entry.fileID
            let decision = identicalIDs.remove(id) != nil ? .skip : (byID[id] ?? .whole)
            let size = item.entry.size
            switch decision {
            case .skip:
                dryRunCounts.identical += 1
            case .whole:
                dryRunCounts.files += 1
                dryRunCounts.bytes += item.entry.kind == .stdin ? 0 : size
                logger.notice("would send '\(item.displayPath)' (\(ByteCount.format(size)))")
            case .resumeAfter(let n):
                dryRunCounts.files += 1
                dryRunCounts.bytes += size - min(size, n)
                logger.notice("would send '\(item.displayPath)' from \(ByteCount.format(n)) on (\(ByteCount.format(size - min(size, n))))")
            case .patch(let reuse):
                let chunk = UInt64(patchChunks[id] ?? 1 << 20)
                var changed: UInt64 = 0
                for (k, kept) in reuse.enumerated() where !kept {
                    let lo = UInt64(k) * chunk
                    if lo < size { changed += min(chunk, size - lo) }
                }
                let past = UInt64(reuse.count) * chunk
                if size > past { changed += size - past }
                dryRunCounts.patched += 1
                dryRunCounts.bytes += changed
                logger.notice("would patch '\(item.displayPath)' (\(ByteCount.format(changed)) of \(ByteCount.format(size)))")
            }
        }
    }

    /// What of `item` goes on the wire, given the sender's decision.
    private func fileSend(_ item: SourceItem, _ decision: BatchPlan.Decision) -> FileSend? {
        let e = item.entry
        switch e.kind {
        case .stdin:
            return FileSend(id: e.fileID, kind: .stdin, size: 0)
        case .file:
            break
        default:
            return nil
        }
        var data: [Range<UInt64>] = e.size == 0 ? [] : [0..<e.size]
        var holes: [Range<UInt64>] = []
        if e.flags.contains(.sparse), let path = item.localPath {
            (data, holes) = Extents.of(path, size: e.size)
        }
        switch decision {
        case .skip:
            return nil
        case .whole:
            break
        case .resumeAfter(let n):
            data = Extents.clip(data, from: n)
            holes = Extents.clip(holes, from: n)
        case .patch(let reuse):
            data = []
            holes = []
            let chunk = UInt64(patchChunks[e.fileID] ?? 1 << 20)
            var at: UInt64 = 0
            var k = 0
            while at < e.size {
                let end = min(e.size, at + chunk)
                if k >= reuse.count || !reuse[k] { data.append(at..<end) }
                at = end
                k += 1
            }
        }
        for h in holes { tally.holeBytes += UInt64(h.count) }
        // Kept only where it is not the whole file (what the helper's
        // read-ahead reads it for): not an insert and a delete per file.
        let planned = data.reduce(0) { $0 + UInt64($1.count) }
        if planned != e.size { plannedBytes[e.fileID] = planned }
        return FileSend(id: e.fileID, kind: .file, size: e.size, data: data, holes: holes)
    }

    private func acknowledged(_ batchID: UInt32, _ results: [BatchAck.Result]) {
        for r in results {
            // Taken, not looked up: an acknowledged file's digest goes
            // either way, and this is the one hash of its id for it.
            let mine = sentDigests.removeValue(forKey: r.fileID)
            guard let item = items[r.fileID] else { continue }
            // Escaped only for the entries that report (a no-op re-push
            // acknowledges every entry as skipped), and once.
            lazy var path = item.displayPath
            switch r.status {
            case .committed:
                if item.entry.kind == .symlink {
                    let mine = item.entry.linkTarget.withUnsafeBytes { StreamHasher.hash($0) }
                    guard mine == r.digest else {
                        finish(.verification("symlink '\(path)': the receiver's link target hashes to \(r.digest.hex), ours to \(mine.hex)"))
                        return
                    }
                    continue
                }
                guard item.entry.kind == .file || item.entry.kind == .stdin else { continue }
                if let mine {
                    guard mine == r.digest else {
                        finish(.verification("'\(path)': the receiver's hash \(r.digest.hex) differs from ours \(mine.hex)"))
                        return
                    }
                    verifiedFiles += 1
                    if agreed.count < ProgressEvent.Summary.digestCap { agreed.append((path, mine)) }
                }
                let size = item.entry.kind == .stdin ? (stdinResult?.size ?? 0) : item.entry.size
                events(.fileDone(.init(session: sessionLabel, path: path, bytes: size, digest: mine)))
            case .skipped:
                break
            case .hashMismatch, .ioError:
                finish(.verification("the receiver could not commit '\(path)' (\(r.status))"))
                return
            }
        }
        items.remove(batch: batchID)
        forget(results)
        scanner?.release()
        pump()
    }

    /// Lets go of what was kept for the files of an acknowledged batch.
    /// A push of small files fills none of these tables, and asking an
    /// empty one still hashes the id: with the digests taken in the loop
    /// above, dictionary lookups fell from 2.1% to 0.9% of the sender's
    /// samples on 100,000 files.
    private func forget(_ results: [BatchAck.Result]) {
        if !plannedBytes.isEmpty { for r in results { plannedBytes[r.fileID] = nil } }
        if !patchChunks.isEmpty { for r in results { patchChunks[r.fileID] = nil } }
        if !streamSources.isEmpty { for r in results { streamSources[r.fileID] = nil } }
        if !unreadable.isEmpty { for r in results { unreadable.remove(r.fileID) } }
        guard !streams.isEmpty || scheduler.hasRetries else { return }
        let ids = Set(results.lazy.map(\.fileID))
        for s in streams { s.forget(ids) }
        scheduler.forget(ids)
    }
}
