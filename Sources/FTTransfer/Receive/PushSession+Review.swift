import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// The review of a manifest against the destination, before any byte
/// lands: what stands where entries go (the policy decides), partials of
/// earlier pushes to offer, free space, and the directories made ahead.
extension PushSession {
    func review() {
        do throws(TransferError) {
            if config.toStdout {
                let data = machine.entries.filter(\.isData)
                if let e = server.policy.stdoutRefusal(entries: machine.entries.count, dataEntries: data.count) {
                    throw .refused(e, peer: peer)
                }
                meter.totalBytes = data[0].entry.kind == .file ? data[0].entry.size : nil
                reviewed()
                return
            }
            let (needed, absent) = try checkDestination()
            let candidates = try lockPartials(absent: absent)
            guard !candidates.isEmpty else {
                try prepare(needed: needed)
                reviewed()
                return
            }
            // Hashing held prefixes may read gigabytes: off the loop, so no
            // other session waits for it. If this session ends meanwhile,
            // the results are dropped (their fds close with them).
            server.offload.run({ Self.hashPrefixes(candidates) }) { [weak self] results in
                guard let self, !connection.isClosing else { return }
                for (i, h) in results { held[i] = h }
                do throws(TransferError) {
                    try prepare(needed: needed)
                } catch {
                    fail(error, frame: error.frame)
                    return
                }
                reviewed()
            }
        } catch {
            fail(error, frame: error.frame)
        }
    }

    /// Conflicts with what exists, and the bytes the push needs. Returns
    /// the directories found absent: nothing beneath them exists either,
    /// so a fresh tree costs one lookup per top directory, not per entry.
    private func checkDestination() throws(TransferError) -> (needed: UInt64, absent: Set<PeerPath>) {
        let dest = server.destination
        var needed: UInt64 = 0
        var absent = Set<PeerPath>()
        for e in machine.entries {
            let existing: stat?
            if let parent = e.path.parent, absent.contains(parent) {
                existing = nil
            } else {
                do {
                    existing = try dest.lookup(e.path.components)
                } catch {
                    throw refusal(.refused, "'\(Escape.forDisplay(e.path.description))': \(error.operation) \(error.target ?? "")")
                }
            }
            if existing == nil, e.entry.kind == .directory { absent.insert(e.path) }
            if let st = existing {
                let kind: ReceiverPolicy.Existing = st.st_mode & S_IFMT == S_IFDIR ? .directory : .notDirectory
                if let conflict = server.policy.conflict(e.entry.kind, Escape.forDisplay(e.path.description), existing: kind) {
                    throw .refused(conflict, peer: peer)
                }
            }
            if e.entry.kind == .file { needed += e.entry.size }
        }
        return (needed, absent)
    }

    /// Partials of earlier pushes of these entries, opened and locked, to
    /// hash and offer in `accept`. A partial another session holds means a
    /// concurrent push of the same entry: refused.
    private func lockPartials(absent: Set<PeerPath>) throws(TransferError) -> [(index: Int, fd: CInt, prefix: UInt64)] {
        // Each host of a chain gets the whole stream.
        guard !machine.chain else { return [] }
        var out: [(index: Int, fd: CInt, prefix: UInt64)] = []
        // A parent that is not there holds no partials: asked once, not once
        // per file (a fresh tree of 10,000 files would walk 10,000 times).
        var missing = absent
        for (i, e) in machine.entries.enumerated() where e.entry.kind == .file && e.entry.size > 0 {
            if let parent = e.path.parent, missing.contains(parent) { continue }
            guard let dir = try? existingParent(of: e.path) else {
                if let parent = e.path.parent { missing.insert(parent) }
                continue
            }
            let p = Partial(e.entry)
            guard let prefix = p.storedPrefix(in: dir), prefix > 0, prefix <= e.entry.size,
                  let part = try? dir.open(p.partName, flags: O_RDWR) else { continue }
            let fd = part.release()
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                for c in out { close(c.fd) }
                throw refusal(.busy, "another push of '\(Escape.forDisplay(e.path.description))' is writing into this directory right now")
            }
            var st = stat()
            guard fstat(fd, &st) == 0, UInt64(st.st_size) >= prefix else {
                close(fd)
                continue
            }
            out.append((i, fd, prefix))
        }
        return out
    }

    /// Runs on the offload thread: each prefix's digest, and the hasher
    /// that read it (a resumed file's hash goes on from there).
    private static func hashPrefixes(_ candidates: [(index: Int, fd: CInt, prefix: UInt64)]) -> [(Int, HeldPrefix)] {
        var out: [(Int, HeldPrefix)] = []
        for c in candidates {
            let hasher = StreamHasher()
            do {
                try hasher.update(fd: c.fd, offset: 0, length: c.prefix)
            } catch {
                close(c.fd)
                continue
            }
            out.append((c.index, HeldPrefix(fd: c.fd, bytes: c.prefix, digest: hasher.digest(), hasher: hasher)))
        }
        return out
    }

    /// Free space for what is still to come, and the directories made.
    private func prepare(needed: UInt64) throws(TransferError) {
        let dest = server.destination
        let toCome = needed - min(needed, held.values.reduce(0) { $0 + $1.bytes })
        let free: UInt64
        do { free = try dest.availableBytes() } catch { throw .io(error) }
        if let e = server.policy.spaceRefusal(needed: toCome, free: free) { throw .refused(e, peer: peer) }
        for (i, e) in machine.entries.enumerated() where e.entry.kind == .directory {
            do {
                let (_, created) = try dest.openDirectory(e.path.components[...], create: true)
                if created > 0 { createdDirectories.append(i) }
            } catch {
                throw .io(error)
            }
        }
        meter.totalBytes = machine.entries.contains { $0.entry.kind == .stdin } ? nil : toCome
    }

    /// The review passed: accept, unless the next host of a chain gets its
    /// chance to accept first (a refusal there passes it by before any data
    /// is committed to it).
    private func reviewed() {
        if let link, !link.final, link.state != .ready {
            reviewWaitsForLink = true
            return
        }
        sendAccept()
    }
}
