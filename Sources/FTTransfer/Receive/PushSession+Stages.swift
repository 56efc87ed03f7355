import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// New top directories built under private names (`Stage`): where an
/// entry's path goes on disk, and when the stages are published.
extension PushSession {
    /// Stages one push may build at once: each holds a locked directory
    /// open; the tops past these are made in place.
    static let maxStages = 16

    /// The stage `path` is built in, if any. A push names few tops: a
    /// scan with no allocation (the loop asks once per small file).
    func stage(of path: PeerPath) -> Stage? {
        guard !stages.isEmpty else { return nil }
        let top = path.top
        return stages.first { $0.building && $0.topBytes.count == top.count && top.elementsEqual($0.topBytes) }
    }

    /// Where `path` is beneath the destination: inside its top's stage
    /// while that is being built, else itself. Every lookup of a push's
    /// paths goes through here.
    func placed(_ path: PeerPath) -> PeerPath {
        stage(of: path).map { path.inside($0.path) } ?? path
    }

    /// Top directory `path` is not in the destination: build it in a
    /// stage, unless this push cannot (a dry run, stdout, a chain: each
    /// host answers for the stream as it lands), has as many as it may,
    /// or the stage cannot be made (then the top is made in place, as
    /// without stages).
    func stageTop(_ path: PeerPath) throws(TransferError) {
        guard path.depth == 1, stages.count < Self.maxStages, stage(of: path) == nil, !config.toStdout,
              !machine.chain, !machine.info.flags.contains(.dryRun) else { return }
        let server = server
        let opening: Stage.Opening
        do {
            opening = try Stage.open(top: path, in: server.destination, logger: server.logger, owner: "session \(id)",
                                     removeLater: { [weak server] job, then in
                                         guard let server else { return then() }
                                         server.removeLeftovers(job, then: then)
                                     }) { [weak server] in
                server?.stagesOpen -= 1
            }
        } catch {
            return
        }
        let name = Escape.forDisplay(path.description)
        switch opening {
        case .staged(let s):
            server.stagesOpen += 1
            stages.append(s)
            if s.old != nil {
                server.logger.info("session \(id): resuming '\(name)' from \(s.old?.displayPath ?? ""), left by a receiver that stopped mid-push: its files that match this push are kept, the rest is removed once the push is complete")
            }
        case .busy:
            throw refusal(.busy, "another push of '\(name)' is still finishing in \(server.policy.destination)")
        case .stale(let dir):
            server.logger.warning("session \(id): '\(name)' is made in place: \(dir) was left by a receiver that stopped mid-push, and its files are not verified (remove it)")
        }
    }

    /// Where the directory of entry `e`, new in an adopted stage, was in
    /// that stage's old top (`Stage.oldName`): its fd and its components
    /// beneath the destination. `cache` holds them for one review.
    func oldParent(of e: IncomingEntry, cache: inout [PeerPath: Directory?]) -> (dir: Directory, components: [String])? {
        guard let stage = stage(of: e.path), stage.old != nil, let parent = e.path.parent else { return nil }
        let components = stage.oldComponents(of: parent)
        if let d = cache[parent] { return d.map { ($0, components) } }
        let dir = try? server.destination.openDirectory(components[...], create: false).0
        cache[parent] = dir
        return dir.map { ($0, components) }
    }

    /// A file of this push that an adopted stage may hold whole: a regular
    /// file of this user's with the entry's size and mtime, and the mode
    /// this receiver gives it (a chmod of the source leaves the mtime
    /// alone), open to be hashed. Size and mtime only pick the candidates:
    /// after a power loss a file can have both and still hold zeros where
    /// its last bytes were never written back, so its content is offered
    /// by digest and the file is moved only once the sender says it is the
    /// same (`moveAdopted`).
    func adoptable(_ e: IncomingEntry, cache: inout [PeerPath: Directory?]) -> (Adoption, CInt)? {
        guard e.entry.kind == .file, let (dir, components) = oldParent(of: e, cache: &cache),
              let file = try? dir.openRegular(e.path.name, flags: O_RDONLY | O_NOFOLLOW) else { return nil }
        var found = stat()
        guard fstat(file.raw, &found) == 0, found.st_uid == geteuid(), found.st_mode & 0o7777 == Directory.effectiveMode(e.entry.mode),
              UInt64(found.st_size) == e.entry.size,
              Int64(found.st_mtim.tv_sec) == e.entry.mtimeSeconds, UInt32(found.st_mtim.tv_nsec) == e.entry.mtimeNanoseconds
        else { return nil }
        return (Adoption(id: e.id, from: components + [e.path.name], to: placed(e.path).components), file.release())
    }

    /// The sender found these adopted files the same as its own: each moves
    /// into the new top (on the offload thread, after the directories its
    /// batch made), and settles as kept once it is there. One that cannot
    /// be moved settles as failed: the sender, told to skip it, sends
    /// nothing for it, and the push says so.
    func moveAdopted(_ moves: [Adoption]) {
        guard !moves.isEmpty else { return }
        var staged: [Stage] = []
        for a in moves { staged.addOnce(machine.entry(a.id).flatMap { stage(of: $0.path) }) }
        let destination = server.destination, offload = server.offload
        writes.run(.store, into: staged, { done in
            offload.run({ DirectoryJob.adopt(moves, in: destination) }, then: done)
        }) { [weak self] (notMoved: Set<UInt32>) in
            guard let self, !connection.isClosing else { return }
            for a in moves where notMoved.contains(a.id) {
                let name = machine.entry(a.id).map { Escape.forDisplay($0.path.description) } ?? "?"
                server.logger.error("session \(id): '\(name)' could not be moved from the stage a stopped receiver left into the new top")
            }
            settleMade(moves.map { ($0.id, notMoved.contains($0.id) ? .ioError : .skipped, .zero) })
        }
    }

    /// Once the push is complete: the adopted stages' earlier tops go, on
    /// this session's own queue, counted as removals; then `then`.
    func discardOldTops(then: @escaping () -> Void) {
        let jobs = stages.compactMap { $0.takeOld() }
        guard !jobs.isEmpty else { return then() }
        for job in jobs {
            writes.sent(.removal)
            server.offload.run(on: ownQueue, { job() }) { [weak self, writes] problem in
                writes.back(.removal)
                if let problem, let self { server.logger.warning("session \(id): \(problem)") }
            }
        }
        writes.whenNoRemovalsOut(then)
    }

    /// The push is complete: its new top directories take their names.
    func publishStages() throws(IOError) {
        var first: IOError?
        for s in stages {
            do throws(IOError) { try s.publish() } catch {
                if first == nil { first = error }
            }
        }
        stages.removeAll()
        if let first { throw first }
    }
}

extension [Stage] {
    /// Adds `stage` once; for the stages a job writes into.
    mutating func addOnce(_ stage: Stage?) {
        if let stage, !contains(where: { $0 === stage }) { append(stage) }
    }
}

/// A whole file an adopted stage already holds: moved from its place in
/// the earlier top (`from`) to its place in the new one (`to`), both as
/// components beneath the destination, once its directory is made.
struct Adoption: Sendable {
    let id: UInt32
    let from: [String]
    let to: [String]
}
