import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// The review of each batch against the destination, before any of its
/// bytes land: what stands where its entries go (the policy decides),
/// partials of earlier pushes to offer, free space, then the directories
/// and symlinks it makes, and the answer.
extension PushSession {
    func review(_ batchID: UInt32) {
        if config.toStdout {
            guard let t = totals else {
                // One entry in all, or none: known once the sender's scan is done.
                reviewWaitsForTotals = batchID
                return
            }
            let entries = machine.entries(of: batchID)
            if let e = server.policy.stdoutRefusal(entries: Int(t.entries), dataEntries: entries.filter(\.isData).count) {
                fail(.refused(e, peer: peer), frame: e)
                return
            }
            answer(batchID, offers: [:])
            return
        }
        reviewingBatch = batchID
        let attempt = busyReview?.attempts ?? 0
        busyReview = nil
        var jobs: [OfferJob] = []
        var identical: [UInt32: BatchAnswer.Offer] = [:]
        var moves: [Adoption] = []
        do throws(TransferError) {
            let need = try checkDestination(machine.entries(of: batchID), jobs: &jobs, identical: &identical, adoptions: &moves)
            let free: UInt64
            do { free = try server.destination.availableBytes() } catch { throw .io(error) }
            let required = space.required(needed: need.bytes, fileBytes: need.fileBytes, allNew: need.allNew)
            if let e = server.policy.spaceRefusal(needed: required, free: free) { throw .refused(e, peer: peer) }
            space.accept(needed: need.bytes, fileBytes: need.fileBytes, allNew: need.allNew)
        } catch {
            for j in jobs { j.abandon() }
            // A partial still locked is most often a push of the same
            // entries that just died (its sender killed and run again at
            // once): its session lets go within moments. Ask again for a
            // while before refusing.
            if case .refused(let f, _) = error, f.code == .busy, attempt < Self.busyRetries {
                if attempt == 0 { server.logger.info("session \(id): \(f.message); waiting for it to let go") }
                busyReview = (batchID, attempt + 1, monotonicNanoseconds() + EventLoop.tickInterval)
                return
            }
            fail(error, frame: error.frame)
            return
        }
        guard !jobs.isEmpty else {
            prepare(batchID, offers: identical, moves: moves)
            return
        }
        // Hashing held prefixes and copies may read gigabytes: off the loop
        // and aside from the ordered jobs, so no other session waits for
        // it (their directories are made on the ordered thread). Reviews
        // of one push run one at a time, so nothing of this push's overtakes
        // it either. If this session ends meanwhile, the results are
        // dropped (their fds close with them).
        let toRun = jobs
        server.offload.runAside({ OfferJob.run(toRun) }) { [weak self] results in
            guard let self, !connection.isClosing else { return }
            var offers = identical
            for r in results {
                switch r {
                case .prefix(let id, let h):
                    held[id] = h
                    offers[id] = .prefix(bytes: h.bytes, digest: h.digest)
                case .digest(let id, let d):
                    offers[id] = .digest(d)
                case .patch(let id, let copy, let digests):
                    copies[id] = copy
                    offers[id] = .chunks(chunkSize: copy.chunkSize, digests: digests)
                case .none(let id):
                    // Unreadable after all: sent whole, or refused if it may
                    // not be replaced.
                    adopting[id] = nil
                    if let e = machine.entry(id), !config.overwrite, compared.contains(id) {
                        let r = refusal(.exists, "'\(Escape.forDisplay(e.path.description))' exists in \(server.policy.destination) and could not be read to compare it; the receiver keeps it")
                        fail(r, frame: r.frame)
                        return
                    }
                }
            }
            prepare(batchID, offers: offers, moves: moves)
        }
    }

    /// Conflicts with what exists, partials to offer, and the bytes the
    /// batch needs. Beneath a directory this push is about to make nothing
    /// exists, so a fresh tree costs one lookup per top directory.
    /// `adoptions`: the parts and maps of big files that an adopted stage
    /// holds for this batch, to move before their data comes.
    private func checkDestination(_ entries: [IncomingEntry], jobs: inout [OfferJob],
                                  identical: inout [UInt32: BatchAnswer.Offer],
                                  adoptions: inout [Adoption]) throws(TransferError) -> Need {
        let request = ReceiverPolicy.SyncRequest(sync: machine.info.flags.contains(.sync), checksum: machine.info.flags.contains(.checksum))
        var needed: UInt64 = 0
        var fileBytes: UInt64 = 0
        var allNew = true
        var absent = Set<PeerPath>()
        var parents: [PeerPath: Directory] = [:]
        var oldParents: [PeerPath: Directory?] = [:]
        for e in entries {
            // Only messages use the name: made when one is.
            var name: String { Escape.forDisplay(e.path.description) }
            var existing: stat?
            var parentDir: Directory?
            if let parent = e.path.parent, absent.contains(parent) || freshlyMade(parent) {
                existing = nil
            } else {
                do {
                    let dir = try parentDirectory(of: e.path, create: false, cache: &parents)
                    parentDir = dir
                    existing = try dir?.status(of: e.path.name)
                    if dir == nil, let parent = e.path.parent { absent.insert(parent) }
                } catch {
                    throw refusal(.refused, "'\(name)': \(error.operation) \(error.target ?? "")")
                }
            }
            if existing == nil, e.entry.kind == .directory {
                absent.insert(e.path)
                if e.path.depth == 1 { try stageTop(e.path) }
            }
            let found = existing.map { st in
                var f = ReceiverPolicy.Found(existing: st.st_mode & S_IFMT == S_IFDIR ? .directory : .notDirectory,
                                             isRegularFile: st.st_mode & S_IFMT == S_IFREG, size: UInt64(st.st_size),
                                             mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: UInt32(st.st_mtim.tv_nsec))
                if e.entry.kind == .symlink, st.st_mode & S_IFMT == S_IFLNK { f.linkTarget = parentDir?.readLink(e.path.name) }
                if e.entry.kind == .hardlink, f.isRegularFile, let source = machine.linkSourcePath(e.entry.linkTo),
                   let sourceDir = try? parentDirectory(of: source, create: false, cache: &parents),
                   let sst = try? sourceDir.status(of: source.name) {
                    f.sameInodeAsSource = sst.st_dev == st.st_dev && sst.st_ino == st.st_ino
                }
                return f
            }
            if found == nil, !stages.isEmpty, let (a, fd) = adoptable(e, cache: &oldParents) {
                // In the stage a stopped receiver left: moved, not sent, if
                // its content is the sender's. Not counted against free
                // space (it mostly is).
                jobs.append(.digest(id: e.id, fd: fd, size: e.entry.size))
                adopting[e.id] = a
                allNew = false
                continue
            }
            switch server.policy.verdict(e.entry, name, found: found, request: machine.chain ? .init() : request) {
            case .proceed:
                break
            case .identical where !machine.chain:
                identical[e.id] = .identical
                allNew = false
                continue
            case .compareDigest:
                // The sender says whether its content is the same; not
                // counted against free space (a re-push mostly matches).
                guard let dir = parentDir, let old = try? dir.openRegular(e.path.name, flags: O_RDONLY) else { break }
                jobs.append(.digest(id: e.id, fd: old.release(), size: e.entry.size))
                compared.insert(e.id)
                allNew = false
                continue
            case .patch(let chunkSize):
                guard let dir = parentDir, let found,
                      let old = try? dir.openRegular(e.path.name, flags: O_RDONLY) else { break }
                var part: CInt = -1
                if !machine.info.flags.contains(.dryRun) {
                    do { part = try FileSink.createLocked(dir, Partial(e.entry), display: name) } catch {
                        throw refusal(.busy, "'\(name)': \(error.description)")
                    }
                }
                jobs.append(.patch(id: e.id, old: old.release(), part: part, oldSize: found.size, chunkSize: chunkSize))
                // The copy takes the old file's size, then the new file's.
                needed += max(found.size, e.entry.size)
                fileBytes += e.entry.size
                allNew = false
                continue
            case .identical:
                // Each host of a chain gets the whole stream, which the next
                // hosts need: an existing file is a conflict here as anywhere.
                if let conflict = server.policy.conflict(e.entry.kind, name, existing: .notDirectory) {
                    throw .refused(conflict, peer: peer)
                }
            case .refuse(let conflict):
                throw .refused(conflict, peer: peer)
            }
            // A sparse file's data size is not known yet (its holes are
            // most of it): the sender's total counts its blocks instead.
            guard e.entry.kind == .file, !e.entry.flags.contains(.sparse) else { continue }
            needed += e.entry.size
            fileBytes += e.entry.size
            // Each host of a chain gets the whole stream: no offers.
            guard !machine.chain, e.entry.size > 0 else { continue }
            // New in an adopted stage: the stopped receiver's part is in its old top.
            let oldPlace = parentDir == nil && !stages.isEmpty ? oldParent(of: e, cache: &oldParents) : nil
            guard let dir = parentDir ?? oldPlace?.dir else { continue }
            // The part first: without one there is nothing to offer (one
            // lookup for the common case). A part another session holds
            // locked is a push of this entry still running, or one that
            // just died, even before it wrote its first map.
            let p = Partial(e.entry)
            guard let part = try? dir.openRegular(p.partName, flags: O_RDWR) else { continue }
            let fd = part.release()
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw refusal(.busy, "another push of '\(name)' is writing into this directory right now")
            }
            // Only a partial this receiver made is resumed, not a file a
            // local user put under its name.
            var st = stat()
            guard let prefix = p.storedPrefix(in: dir), prefix > 0, prefix <= e.entry.size,
                  fstat(fd, &st) == 0, UInt64(st.st_size) >= prefix, st.st_uid == geteuid() else {
                close(fd)
                continue
            }
            jobs.append(.prefix(id: e.id, fd: fd, bytes: prefix))
            if let oldPlace {
                // Moved beside where the file goes before its data comes (the
                // fd and its lock go with it).
                let to = placed(e.path).components.dropLast()
                for name in [p.partName, p.mapName] {
                    adoptions.append(Adoption(id: e.id, from: oldPlace.components + [name], to: to + [name]))
                }
            }
            needed -= prefix
            allNew = false
        }
        return Need(bytes: needed, fileBytes: fileBytes, allNew: allNew)
    }

    /// What a batch asks of the disk.
    private struct Need {
        /// Bytes still to land.
        var bytes: UInt64
        /// Bytes of its files in all, there already or not.
        var fileBytes: UInt64
        /// Whether nothing of it was there already.
        var allNew: Bool
    }

    /// Whether `path` is a directory this push made in this review, or
    /// around it (nothing was there before it).
    private func freshlyMade(_ path: PeerPath) -> Bool {
        madeOpenDirs.contains(path)
    }

    /// The batch passed: make its directories and symlinks, then answer
    /// (unless the next host of a chain gets its chance to answer first: a
    /// refusal there passes it by before any data is committed to it).
    ///
    /// The directories are made on the offload thread: a deep new tree
    /// costs a few lookups and a mkdir per level, and a batch may hold
    /// thousands of levels, which on the loop would hold every other
    /// session (a 255-deep manifest held it for ~200 ms).
    private func prepare(_ batchID: UInt32, offers: [UInt32: BatchAnswer.Offer], moves: [Adoption]) {
        var staged: [Stage] = []
        var dirs: [(UInt32, [String], ManifestEntry)] = []
        do {
            // By index: filtering the batch copied every entry to test it.
            let all = machine.entries(of: batchID)
            for i in all.indices where all[i].entry.kind == .directory {
                staged.addOnce(stage(of: all[i].path))
                dirs.append((all[i].id, placed(all[i].path).components, all[i].entry))
            }
        }
        for a in moves { staged.addOnce(stage(of: machine.entry(a.id)!.path)) }
        guard !dirs.isEmpty || !moves.isEmpty else {
            prepared(batchID, offers: offers, directories: [:])
            return
        }
        let destination = server.destination
        let create = !machine.info.flags.contains(.dryRun)
        let offload = server.offload
        writes.run(.store, into: staged, { done in
            offload.run({ [dirs] in
                (DirectoryJob.run(dirs, in: destination, create: create), DirectoryJob.adopt(moves, in: destination))
            }, then: done)
        }) { [weak self] (results: [UInt32: DirectoryJob.Result], notMoved: Set<UInt32>) in
            guard let self, !connection.isClosing else { return }
            var offers = offers
            // What could not be moved is sent after all, from its start.
            for id in notMoved {
                offers[id] = nil
                dropHeld(id)
            }
            prepared(batchID, offers: offers, directories: results)
        }
    }

    /// The rest of `prepare`, on the loop, with what became of each
    /// directory entry.
    private func prepared(_ batchID: UInt32, offers: [UInt32: BatchAnswer.Offer], directories: [UInt32: DirectoryJob.Result]) {
        // The batch's entries are let go of before `answer`: held here,
        // they would make the machine copy all of them when it writes the
        // offers in.
        var entries = machine.entries(of: batchID)
        var made: [(UInt32, BatchAck.Status, Digest128)] = []
        let dryRun = machine.info.flags.contains(.dryRun)
        let ids = dryRun ? entries.map(\.id) : []
        for e in entries {
            closeDirectories(before: e.path, batch: batchID)
            if let top = openDirs.indices.last, openDirs[top].keep != nil, e.path.parent == openDirs[top].path {
                openDirs[top].keep!.insert(Array(e.path.name.utf8))
            }
            switch e.entry.kind {
            case .directory:
                switch directories[e.id] {
                case .made(let levels, let asLeft)?:
                    track(e, made: levels > 0, existed: levels == 0, asLeft: asLeft)
                case .absent?:
                    // Dry run: nothing is made; existing directories are
                    // still tracked, so that --delete can say what it would remove.
                    track(e, made: false, existed: false)
                case .failed(let error)?:
                    fail(.io(error), frame: TransferError.io(error).frame)
                    return
                case nil:
                    preconditionFailure("directory entry \(e.id) was not made")
                }
                if !dryRun { made.append((e.id, .committed, .zero)) }
            case .symlink where !dryRun && offers[e.id] != .identical:
                guard let result = makeSymlink(e) else { return }
                made.append((e.id, result.0, result.1))
            default:
                break
            }
        }
        entries = []
        if let link, !link.final, link.state != .ready {
            reviewWaitsForLink = (batchID, offers)
            settleMade(made)
            return
        }
        if config.toStdout {
            answer(batchID, offers: [:])
            return
        }
        answer(batchID, offers: offers)
        if dryRun {
            // The sender sends no plan and no data: every entry settles as
            // skipped, and the batch is acknowledged at once.
            for id in ids where !connection.isClosing && machine.entry(id)?.finished == false { settle(id, .skipped) }
            return
        }
        settleMade(made + identicalOf(offers))
    }

    /// Entries the receiver has already: settled as skipped once answered.
    private func identicalOf(_ offers: [UInt32: BatchAnswer.Offer]) -> [(UInt32, BatchAck.Status, Digest128)] {
        offers.compactMap { id, offer in offer == .identical ? (id, .skipped, .zero) : nil }.sorted { $0.0 < $1.0 }
    }

    func settleMade(_ made: [(UInt32, BatchAck.Status, Digest128)]) {
        for (fileID, status, digest) in made {
            guard !connection.isClosing else { return }
            if status == .skipped, let e = machine.entry(fileID), e.entry.flags.contains(.linkSource),
               let dir = try? parentDirectory(of: e.path), let st = try? dir.status(of: e.path.name) {
                // Already here, identical: later names link to this inode.
                linkInodes[fileID] = (UInt64(st.st_dev), UInt64(st.st_ino))
            }
            settle(fileID, status, digest: digest)
        }
    }

    /// Sends the answer and tells the machine; what that brings (links to
    /// make, the next review) follows.
    func answer(_ batchID: UInt32, offers: [UInt32: BatchAnswer.Offer]) {
        let items = offers.sorted { $0.key < $1.key }.map { BatchAnswer.Item(fileID: $0.key, offer: $0.value) }
        let frames = BatchAnswer.frames(batchID: batchID, items)
        if let link, !heldAnswers.isEmpty || !link.mayAnswer(batchID) {
            // The sender sends a batch's data once it has the answer, and the
            // next host refuses data for a batch it has not reviewed: so the
            // answer goes up once that host answered too. Reviewing goes on.
            heldAnswers.append((batchID, frames))
        } else {
            sendAnswers([frames])
        }
        act(machine.answered(batchID, offers: offers))
    }

    /// Sends the frames of one or more batch answers, in order, at once.
    func sendAnswers(_ answers: [[BatchAnswer]]) {
        for frames in answers {
            for frame in frames { channel.enqueue(.answer(frame)) }
        }
        channel.flush()
    }

    /// The sender's decisions on the offers: held prefixes it does not
    /// resume from are dropped, skipped entries are settled.
    func applyPlan(_ batchID: UInt32, _ items: [BatchPlan.Item]) {
        var decided = Set<UInt32>()
        var kept: [Adoption] = []
        for item in items {
            decided.insert(item.fileID)
            switch item.decision {
            case .whole:
                dropHeld(item.fileID)
                adopting[item.fileID] = nil
                if compared.remove(item.fileID) != nil, !config.overwrite, let e = machine.entry(item.fileID) {
                    // Its content differs from the copy here, which this
                    // receiver may not replace.
                    let conflict = server.policy.conflict(.file, Escape.forDisplay(e.path.description), existing: .notDirectory)!
                    fail(.refused(conflict, peer: peer), frame: conflict)
                    return
                }
            case .resumeAfter:
                break
            case .skip:
                if let a = adopting.removeValue(forKey: item.fileID) {
                    kept.append(a)
                    continue
                }
                dropHeld(item.fileID)
                compared.remove(item.fileID)
                settle(item.fileID, .skipped)
            case .patch(let reuse):
                held[item.fileID] = nil
                copies[item.fileID]?.reuse = reuse
            }
        }
        // An offer the plan does not name is not taken.
        for e in machine.entries(of: batchID) where e.offer != nil && !decided.contains(e.id) {
            dropHeld(e.id)
            adopting[e.id] = nil
            if compared.remove(e.id) != nil, !config.overwrite {
                let conflict = server.policy.conflict(.file, Escape.forDisplay(e.path.description), existing: .notDirectory)!
                fail(.refused(conflict, peer: peer), frame: conflict)
                return
            }
        }
        moveAdopted(kept)
    }

    private func dropHeld(_ fileID: UInt32) {
        let wasHeld = held.removeValue(forKey: fileID) != nil
        let wasCopied = copies.removeValue(forKey: fileID) != nil
        guard wasHeld || wasCopied, let e = machine.entry(fileID),
              let dir = try? parentDirectory(of: e.path) else { return }
        // The held fd closes with the HeldPrefix; its bytes go.
        Partial(e.entry).remove(in: dir)
    }
}
