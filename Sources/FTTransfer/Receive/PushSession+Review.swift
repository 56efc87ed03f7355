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
        let entries = machine.entries(of: batchID)
        var candidates: [(id: UInt32, fd: CInt, prefix: UInt64)] = []
        var identical: [UInt32: BatchAnswer.Offer] = [:]
        do throws(TransferError) {
            let need = try checkDestination(entries, partials: &candidates, identical: &identical)
            let free: UInt64
            do { free = try server.destination.availableBytes() } catch { throw .io(error) }
            let required = space.required(needed: need.bytes, fileBytes: need.fileBytes, allNew: need.allNew)
            if let e = server.policy.spaceRefusal(needed: required, free: free) { throw .refused(e, peer: peer) }
            space.accept(needed: need.bytes, fileBytes: need.fileBytes, allNew: need.allNew)
        } catch {
            for c in candidates { close(c.fd) }
            fail(error, frame: error.frame)
            return
        }
        guard !candidates.isEmpty else {
            prepare(batchID, offers: identical)
            return
        }
        // Hashing held prefixes may read gigabytes: off the loop, so no
        // other session waits for it. If this session ends meanwhile, the
        // results are dropped (their fds close with them).
        let toHash = candidates
        server.offload.run({ Self.hashPrefixes(toHash) }) { [weak self] results in
            guard let self, !connection.isClosing else { return }
            var offers = identical
            for (fileID, h) in results {
                held[fileID] = h
                offers[fileID] = .prefix(bytes: h.bytes, digest: h.digest)
            }
            prepare(batchID, offers: offers)
        }
    }

    /// Conflicts with what exists, partials to offer, and the bytes the
    /// batch needs. Beneath a directory this push is about to make nothing
    /// exists, so a fresh tree costs one lookup per top directory.
    private func checkDestination(_ entries: [IncomingEntry], partials: inout [(id: UInt32, fd: CInt, prefix: UInt64)],
                                  identical: inout [UInt32: BatchAnswer.Offer]) throws(TransferError) -> Need {
        var needed: UInt64 = 0
        var fileBytes: UInt64 = 0
        var allNew = true
        var absent = Set<PeerPath>()
        var parents: [PeerPath: Directory] = [:]
        for e in entries {
            let name = Escape.forDisplay(e.path.description)
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
            if existing == nil, e.entry.kind == .directory { absent.insert(e.path) }
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
            switch server.policy.verdict(e.entry, name, found: found) {
            case .proceed:
                break
            case .identical where !machine.chain:
                identical[e.id] = .identical
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
            guard !machine.chain, e.entry.size > 0, let dir = parentDir else { continue }
            let p = Partial(e.entry)
            guard let prefix = p.storedPrefix(in: dir), prefix > 0, prefix <= e.entry.size,
                  let part = try? dir.open(p.partName, flags: O_RDWR) else { continue }
            let fd = part.release()
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw refusal(.busy, "another push of '\(name)' is writing into this directory right now")
            }
            var st = stat()
            guard fstat(fd, &st) == 0, UInt64(st.st_size) >= prefix else {
                close(fd)
                continue
            }
            partials.append((e.id, fd, prefix))
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
        openDirs.contains { $0.created && $0.path == path }
    }

    /// Runs on the offload thread: each prefix's digest, and the hasher
    /// that read it (a resumed file's hash goes on from there).
    private static func hashPrefixes(_ candidates: [(id: UInt32, fd: CInt, prefix: UInt64)]) -> [(UInt32, HeldPrefix)] {
        var out: [(UInt32, HeldPrefix)] = []
        for c in candidates {
            let hasher = StreamHasher()
            do {
                try hasher.update(fd: c.fd, offset: 0, length: c.prefix)
            } catch {
                close(c.fd)
                continue
            }
            out.append((c.id, HeldPrefix(fd: c.fd, bytes: c.prefix, digest: hasher.digest(), hasher: hasher)))
        }
        return out
    }

    /// The batch passed: make its directories and symlinks, then answer
    /// (unless the next host of a chain gets its chance to answer first: a
    /// refusal there passes it by before any data is committed to it).
    private func prepare(_ batchID: UInt32, offers: [UInt32: BatchAnswer.Offer]) {
        let entries = machine.entries(of: batchID)
        var made: [(UInt32, BatchAck.Status, Digest128)] = []
        for e in entries {
            closeDirectories(before: e.path, batch: batchID)
            switch e.entry.kind {
            case .directory:
                do {
                    let (_, created) = try server.destination.openDirectory(e.path.components[...], create: true)
                    openDirs.append((e.path, e.entry, created > 0))
                } catch {
                    fail(.io(error), frame: TransferError.io(error).frame)
                    return
                }
                made.append((e.id, .committed, .zero))
            case .symlink where offers[e.id] != .identical:
                guard let result = makeSymlink(e) else { return }
                made.append((e.id, result.0, result.1))
            default:
                break
            }
        }
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
        settleMade(made + identicalOf(offers))
    }

    /// Entries the receiver has already: settled as skipped once answered.
    private func identicalOf(_ offers: [UInt32: BatchAnswer.Offer]) -> [(UInt32, BatchAck.Status, Digest128)] {
        offers.compactMap { id, offer in offer == .identical ? (id, .skipped, .zero) : nil }.sorted { $0.0 < $1.0 }
    }

    private func settleMade(_ made: [(UInt32, BatchAck.Status, Digest128)]) {
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
        for frame in BatchAnswer.frames(batchID: batchID, items) { channel.enqueue(.answer(frame)) }
        channel.flush()
        act(machine.answered(batchID, offers: offers))
    }

    /// The sender's decisions on the offers: held prefixes it does not
    /// resume from are dropped, skipped entries are settled.
    func applyPlan(_ batchID: UInt32, _ items: [BatchPlan.Item]) {
        var decided = Set<UInt32>()
        for item in items {
            decided.insert(item.fileID)
            switch item.decision {
            case .whole:
                dropHeld(item.fileID)
            case .resumeAfter:
                break
            case .skip:
                dropHeld(item.fileID)
                settle(item.fileID, .skipped)
            case .patch:
                dropHeld(item.fileID)
            }
        }
        // An offer the plan does not name is not taken.
        for e in machine.entries(of: batchID) where e.offer != nil && !decided.contains(e.id) { dropHeld(e.id) }
    }

    private func dropHeld(_ fileID: UInt32) {
        guard held.removeValue(forKey: fileID) != nil, let e = machine.entry(fileID),
              let dir = try? parentDirectory(of: e.path) else { return }
        // The held fd closes with the HeldPrefix; its bytes go.
        Partial(e.entry).remove(in: dir)
    }

    // MARK: Directories' metadata

    /// Directories around the previous entry that `path` is not inside are
    /// fully announced: their metadata goes on once the batches holding
    /// what is in them are acknowledged.
    private func closeDirectories(before path: PeerPath, batch: UInt32) {
        while let top = openDirs.last, !path.isInside(top.path) {
            openDirs.removeLast()
            if top.created { closedDirs.append((top.path, top.entry, batch)) }
        }
    }

    /// Modes and mtimes of the directories made, deepest first, once
    /// nothing more is written into them.
    func applyDirectoryMetadata(upTo batch: UInt32) {
        if batch == .max {
            for d in openDirs where d.created { closedDirs.append((d.path, d.entry, 0)) }
            openDirs.removeAll()
        }
        var ready = closedDirs.filter { $0.batch <= batch }
        guard !ready.isEmpty else { return }
        closedDirs.removeAll { $0.batch <= batch }
        ready.sort { $0.path.components.count > $1.path.components.count }
        for d in ready {
            do {
                let (dir, _) = try server.destination.openDirectory(d.path.components[...], create: false)
                try Directory.applyMetadata(dir.fd, mode: d.entry.mode, mtimeSeconds: d.entry.mtimeSeconds,
                                            mtimeNanoseconds: d.entry.mtimeNanoseconds, path: dir.displayPath,
                                            owner: ownerOf(d.entry))
            } catch {
                server.logger.warning("could not set mode/mtime: \(error)")
            }
        }
    }

    /// uid and gid to apply: only when asked, and only as root.
    func ownerOf(_ e: ManifestEntry) -> (uid: UInt32, gid: UInt32)? {
        guard machine.info.flags.contains(.owner), e.flags.contains(.owner), geteuid() == 0 else { return nil }
        return (e.uid, e.gid)
    }
}

extension PeerPath {
    /// Whether this path is `dir` or beneath it.
    func isInside(_ dir: PeerPath) -> Bool {
        components.count > dir.components.count && components.starts(with: dir.components)
    }
}
