import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The directories a push makes or merges into, as its entries go by:
/// which are still open (names still coming), their modes and mtimes once
/// complete, `--delete`'s pruning of what they held beyond the push, and
/// the offload jobs the push's end waits for.
extension PushSession {

    /// Directories around the previous entry that `path` is not inside are
    /// fully announced: their metadata goes on once the batches holding
    /// what is in them are acknowledged.
    func closeDirectories(before path: PeerPath, batch: UInt32) {
        while let top = openDirs.last, !path.isInside(top.path) {
            openDirs.removeLast()
            if top.created { madeOpenDirs.remove(top.path) }
            if top.created || top.asLeft { closedDirs.append((top.path, top.entry, batch)) }
            if let keep = top.keep { prune(top.path, keep: keep) }
        }
    }

    /// The end of the push: directories still open are complete too.
    func pruneOpenDirectories() {
        for d in openDirs.reversed() {
            if let keep = d.keep { prune(d.path, keep: keep) }
        }
        for i in openDirs.indices { openDirs[i].keep = nil }
    }

    /// Directory entry `e` is open while its names are announced. One this
    /// push made, or one `asLeft` by a push of it cut off, gets its
    /// metadata once complete; an existing one of a --delete push keeps
    /// only the names the push announces in it.
    func track(_ e: IncomingEntry, made: Bool, existed: Bool, asLeft: Bool = false) {
        let prunes = existed && machine.info.flags.contains(.delete)
        openDirs.append(OpenDirectory(path: e.path, entry: e.entry, created: made, asLeft: asLeft, keep: prunes ? [] : nil))
        if made { madeOpenDirs.insert(e.path) }
    }

    /// Removes (dry run: counts) what `path` holds beyond `keep`, off the loop.
    private func prune(_ path: PeerPath, keep: Set<[UInt8]>) {
        let fd: CInt
        let display = Escape.forDisplay(path.description)
        do {
            let (dir, _) = try server.destination.openDirectory(placed(path).components[...], create: false)
            fd = dup(dir.fd)
        } catch {
            server.logger.warning("session \(id): not pruning '\(display)': \(error)")
            return
        }
        guard fd >= 0 else { return }
        let dryRun = machine.info.flags.contains(.dryRun)
        writes.sent(.removal)
        server.offload.run(on: ownQueue, { Prune.run(fd, display: display, keep: keep, dryRun: dryRun) }) { [weak self, writes] out in
            defer { writes.back(.removal) }
            guard let self else { return }
            deletedCount += out.count
            let verb = dryRun ? "would delete" : "deleted"
            for name in out.names { server.logger.notice("session \(id): \(verb) \(name)") }
            if out.count > UInt64(out.names.count) {
                server.logger.notice("session \(id): \(verb) \(out.count - UInt64(out.names.count)) more in '\(display)'")
            }
            for f in out.failures { server.logger.warning("session \(id): could not delete \(f)") }
        }
    }

    /// Modes and mtimes of the directories made, deepest first, once
    /// nothing more is written into them. `cutOff`: the push ends before
    /// they are complete. They take their modes now (else they kept ft's
    /// 0700 for good), owner's rwx kept so that the next push can finish
    /// them. That push finds them existing; it gives them their metadata
    /// again once complete (its own writes moved their mtimes), but only
    /// if they still have what this one gave them.
    ///
    /// On this session's own queue, not the loop: three syscalls a
    /// directory, thousands of directories in a batch, on a disk that may
    /// be busy with its journal. Behind the prunes and sweeps already
    /// queued there (their directories' mtimes move before, not after),
    /// counted as a removal, and with the stages held open until it is
    /// done (the paths it resolves are inside them). `then` runs on the
    /// loop once it is.
    func applyDirectoryMetadata(upTo batch: UInt32, cutOff: Bool = false, then: (() -> Void)? = nil) {
        if batch == .max {
            for d in openDirs where d.created || d.asLeft { closedDirs.append((d.path, d.entry, 0)) }
            openDirs.removeAll()
            madeOpenDirs.removeAll()
        }
        var ready = closedDirs.filter { $0.batch <= batch }
        guard !ready.isEmpty else {
            then?()
            return
        }
        closedDirs.removeAll { $0.batch <= batch }
        ready.sort { $0.path.depth > $1.path.depth }
        let dirs = ready.map { d in
            DirectoryMetadata(components: placed(d.path).components, mode: cutOff ? DirectoryMetadata.cutOffMode(d.entry.mode) : d.entry.mode,
                              mtimeSeconds: d.entry.mtimeSeconds, mtimeNanoseconds: d.entry.mtimeNanoseconds, owner: ownerOf(d.entry))
        }
        let destination = server.destination, logger = server.logger, offload = server.offload, queue = ownQueue
        let staged = stages
        let send = { [writes] in
            writes.run(.removal, into: staged, { done in
                offload.run(on: queue, { DirectoryMetadata.apply(dirs, in: destination, logger) }, then: done)
            }) { then?() }
        }
        // Cut off, store jobs may still be linking files into them.
        if cutOff { writes.whenNoneOut(send) } else { send() }
    }

    /// uid and gid to apply: only when asked, and only as root.
    func ownerOf(_ e: ManifestEntry) -> (uid: UInt32, gid: UInt32)? {
        guard machine.info.flags.contains(.owner), e.flags.contains(.owner), geteuid() == 0 else { return nil }
        return (e.uid, e.gid)
    }
}

/// What a complete directory gets, found by its placed path.
struct DirectoryMetadata {
    var components: [String]
    var mode: UInt32
    var mtimeSeconds: Int64
    var mtimeNanoseconds: UInt32
    var owner: (uid: UInt32, gid: UInt32)?

    /// The mode a cut-off push gives a directory it made: the entry's,
    /// with its owner's rwx, so that the next push can finish it.
    static func cutOffMode(_ mode: UInt32) -> UInt32 { mode | 0o700 }

    /// In order (deepest first: a parent's mtime is set after its
    /// children's, whose changes would move it).
    static func apply(_ dirs: [DirectoryMetadata], in destination: Directory, _ logger: Logger) {
        ReceiveFault.slow(.metadata)
        for d in dirs {
            do {
                let (dir, _) = try destination.openDirectory(d.components[...], create: false)
                try Directory.applyMetadata(dir.fd, mode: d.mode, mtimeSeconds: d.mtimeSeconds, mtimeNanoseconds: d.mtimeNanoseconds,
                                            path: dir.displayPath, owner: d.owner)
            } catch {
                logger.warning("could not set mode/mtime: \(error)")
            }
        }
    }
}
