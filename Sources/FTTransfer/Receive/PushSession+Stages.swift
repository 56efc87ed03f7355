import FTEngine
import FTWire

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
            opening = try Stage.open(top: path, in: server.destination, logger: server.logger, owner: "session \(id)") { [weak server] in
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
        case .busy:
            throw refusal(.busy, "another push of '\(name)' is still finishing in \(server.policy.destination)")
        case .stale(let dir):
            server.logger.warning("session \(id): '\(name)' is made in place: \(dir) was left by a receiver that stopped mid-push, and its files are not verified (remove it)")
        }
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
