import FTEngine
import FTWire
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A top directory that a push brings new into the destination, built
/// under a private name beside it (`.ft-stage-<hash of its name>/<top>`)
/// and moved into place, whole, when the push ends.
///
/// Why: a file that appears under its final name must be complete, so
/// each small file elsewhere is written anonymously (O_TMPFILE) and linked
/// into place. Nothing inside a stage is under a final name yet, so its
/// files are created under their names directly: one create instead of an
/// anonymous create and a link. 10,000 × 4 KiB: 0.95× the receiver's CPU
/// and 0.95× the sender's wall time (15 runs); 100,000 × 0.5-1 KiB: 0.91×
/// and 0.93× (7 runs; `tools/bench-ab`, unpinned, tmpfs). The loop's
/// share is kept small: it finds a path's stage by a scan of at most
/// `maxStages` names and hands the stage to the store job, which joins
/// the names once per directory (joining them per file on the loop cost
/// half the gain).
///
/// What it keeps safe:
/// - Paths inside a stage resolve from the destination's fd by name, as
///   every other path does (`PushSession.placed`): a stage moved out of
///   the destination is not written through.
/// - The stage is published, by one `RENAME_NOREPLACE` from its own fd,
///   only once no job writes into it: at the push's end, or once its last
///   job is in when the push failed (its files are all verified: small
///   ones are checked in memory before they are written, big ones keep
///   their temp names until they are). A receiver killed meanwhile leaves
///   the stage where it is, under its private name, and its last small
///   files may be torn there. The next push of the same top finds it
///   unlocked and adopts it: the old top is set aside (`oldName`), each
///   file of the push found there with its entry's size and mtime is
///   offered by digest and, if the sender's content is the same, moved
///   into the new top instead of sent (a big file's part and map too, and
///   it resumes from them once its prefix hashes the same), and the rest
///   is removed once the push is complete, so nothing the push did not
///   vouch for is published. A receiver stopped again mid-adoption leaves both trees;
///   the next push sets both aside and adopts from the newer. Only a third
///   stop in a row leaves a stage that is not used; the receiver says so.
///   A push cut off while adopting (its sender gone, the receiver still
///   up) publishes what it vouched for and removes the rest with the stage.
/// - The stage directory is locked (flock) while a session builds it: a
///   second push of the same top waits for the first to publish, then
///   finds the top in place and merges into it as it would anyway.
/// - Should the top appear under its final name meanwhile, it is never
///   replaced: the push fails and says where its files are.
///
/// Loop thread only: the jobs that write into a stage are counted when
/// they are sent and when their results come back to the loop.
final class Stage {
    /// The top directory's name.
    let top: String
    let topBytes: [UInt8]
    /// The stage directory, as a path of one component.
    let path: PeerPath
    private let destination: Directory
    /// Open (and locked) until published.
    private var directory: Directory?
    private var writers = 0
    private var closing = false
    private let logger: Logger
    /// Whose stage, for the log ("session 3").
    private let owner: String
    private let settled: () -> Void
    /// Runs a removal job off the loop (it may be a large tree), then the
    /// closure given with it, on the loop.
    typealias RemoveLater = (_ job: @escaping @Sendable () -> String?, _ then: @escaping () -> Void) -> Void
    private let removeLater: RemoveLater

    enum Opening {
        case staged(Stage)
        /// Another session builds this top right now.
        case busy
        /// A stage left by receivers that stopped mid-push three times in a
        /// row (or that cannot be set aside): not used.
        case stale(String)
    }

    /// Inside a stage left by a receiver that stopped mid-push, where its
    /// top is moved when the next push of that top adopts the stage. A
    /// file there may be torn (small files inside a stage are written
    /// under their names), so nothing there is published as it is: a file
    /// with the entry's size and mtime (ft sets the mtime after the last
    /// byte) whose content the sender finds the same is moved into the new
    /// top instead of sent; the rest goes once the push is complete
    /// (`takeOld`), or once it is cut off. The name cannot be a top's:
    /// peers may not name `.ft-stage-*` at the top.
    static let oldName = ".ft-stage-old"
    static let olderName = ".ft-stage-older"

    /// Makes and locks the stage for top directory `top` (one component).
    /// `settled` runs once it is published or given up.
    static func open(top: PeerPath, in destination: Directory, logger: Logger, owner: String,
                     removeLater: @escaping RemoveLater, settled: @escaping () -> Void) throws(IOError) -> Opening {
        let name = String(decoding: ReceiverMachine.stagePrefix, as: UTF8.self) + String(top.bytes.withUnsafeBytes { StreamHasher.hash($0) }.hex.prefix(16))
        guard let path = try? PeerPath.validate(Array(name.utf8)) else { preconditionFailure("stage name \(name)") }
        let made = mkdirat(destination.fd, name, 0o700) == 0
        if !made, errno != EEXIST { throw IOError(Errno(rawValue: errno), "create", destination.displayPath + "/" + name) }
        let dir: Directory
        do throws(IOError) {
            (dir, _) = try destination.openDirectory([name], create: false)
        } catch {
            if made { destination.removeEmptyDirectory(name) }
            throw error
        }
        guard flock(dir.fd, LOCK_EX | LOCK_NB) == 0 else { return .busy }
        var old: Directory?
        if !made {
            // Unlocked, so its receiver is gone: adopt it.
            do throws(IOError) { old = try setAside(top: top.description, in: dir) } catch {
                return .stale(dir.displayPath)
            }
        }
        return .staged(Stage(top: top.description, path: path, destination: destination, directory: dir, old: old,
                             logger: logger, owner: owner, removeLater: removeLater, settled: settled))
    }

    /// A stopped receiver's stage: its top is set aside as `oldName`, to
    /// adopt from. If a stopped adoption left `oldName` already, that goes
    /// to `olderName` first, to be removed with the rest; a third stop in
    /// a row leaves the stage unusable (throws).
    private static func setAside(top: String, in dir: Directory) throws(IOError) -> Directory? {
        guard try dir.status(of: top) != nil else {
            // Stopped before it made its top: what is set aside, if anything, is newest.
            guard try dir.status(of: oldName) != nil else { return nil }
            return try dir.openDirectory([oldName], create: false).0
        }
        if try dir.status(of: oldName) != nil {
            guard try dir.status(of: olderName) == nil else {
                throw IOError(.fileExists, "adopt", dir.displayPath + " (it holds the leftovers of two stopped pushes)")
            }
            try dir.rename(oldName, to: olderName, replace: false)
        }
        try dir.rename(top, to: oldName, replace: false)
        return try dir.openDirectory([oldName], create: false).0
    }

    private init(top: String, path: PeerPath, destination: Directory, directory: Directory, old: Directory?,
                 logger: Logger, owner: String, removeLater: @escaping RemoveLater, settled: @escaping () -> Void) {
        self.top = top
        topBytes = Array(top.utf8)
        self.path = path
        self.destination = destination
        self.directory = directory
        self.old = old
        self.logger = logger
        self.owner = owner
        self.settled = settled
        self.removeLater = removeLater
    }

    /// The adopted stage's earlier top (`oldName`), while it is there.
    private(set) var old: Directory?

    /// Where `path` (under this stage's top) was in the earlier top, as
    /// components beneath the destination.
    func oldComponents(of path: PeerPath) -> [String] {
        [self.path.description, Self.oldName] + path.components.dropFirst()
    }

    /// Takes the earlier top away for removal, once the push is complete
    /// (nothing is moved out of it any more): the job, for a removal queue
    /// (it may be a large tree).
    func takeOld() -> (@Sendable () -> String?)? {
        guard let old, let directory else { return nil }
        self.old = nil
        return removal(of: old, in: directory, thenStage: false)
    }

    /// The job that removes the earlier top, and the older one a second
    /// stop left, and with `thenStage` the stage directory itself, then
    /// empty. The stage is private (0700), so all of it is ft's own. The
    /// job holds a duplicate of the stage's fd, and so its lock, until it
    /// is done: no push of the same top takes the stage meanwhile.
    private func removal(of old: Directory, in directory: Directory, thenStage: Bool) -> @Sendable () -> String? {
        let display = old.displayPath
        let oldFD = dup(old.fd), stageFD = dup(directory.fd), destinationFD = thenStage ? dup(destination.fd) : -1
        let stageName = path.description
        guard oldFD >= 0, stageFD >= 0, !thenStage || destinationFD >= 0 else {
            let problem = "could not remove \(display): \(IOError(Errno(rawValue: errno), "open").description)"
            for fd in [oldFD, stageFD, destinationFD] where fd >= 0 { Glibc.close(fd) }
            return { problem }
        }
        return {
            var failures = Prune.run(oldFD, display: display, keep: [], dryRun: false, keepOwn: false).failures
            _ = unlinkat(stageFD, Stage.oldName, AT_REMOVEDIR)
            let older = openat(stageFD, Stage.olderName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if older >= 0 {
                failures += Prune.run(older, display: display, keep: [], dryRun: false, keepOwn: false).failures
                _ = unlinkat(stageFD, Stage.olderName, AT_REMOVEDIR)
            }
            if destinationFD >= 0 {
                _ = unlinkat(destinationFD, stageName, AT_REMOVEDIR)
                Glibc.close(destinationFD)
            }
            Glibc.close(stageFD)
            return failures.first.map { "could not remove all of what a stopped receiver left in \(display): \($0)" }
        }
    }

    /// Dropped unpublished (its session and jobs gone without `close`):
    /// published if nothing can still write into it, else left as it is.
    deinit {
        guard directory != nil else { return }
        if writers == 0 { publishLogging() } else { directory = nil; settled() }
    }

    /// Whether paths under the top still go into the stage.
    var building: Bool { directory != nil }

    /// A job that writes into the stage was sent; `left` when it is back.
    func entered() { writers += 1 }

    func left() {
        writers -= 1
        if closing, writers == 0 { publishLogging() }
    }

    /// The session is over, complete or not: publish once no job writes.
    func close() {
        closing = true
        if writers == 0 { publishLogging() }
    }

    private func publishLogging() {
        do throws(IOError) { try publish() } catch {
            logger.warning("\(owner): \(error)")
        }
    }

    /// Moves the top into place; with a job still writing into it, once
    /// that is back (as `close`). Throws if the top appeared under its
    /// final name meanwhile; the stage then stays where it is, named in
    /// the error.
    func publish() throws(IOError) {
        guard writers == 0 else { return close() }
        guard let dir = directory else { return }
        directory = nil
        var settleNow = true
        defer { if settleNow { settled() } }
        do {
            try dir.move(top, into: destination)
        } catch where error.errno == .noSuchFileOrDirectory {
            // The push ended before its top was made.
        } catch where error.errno == .fileExists || error.errno == .directoryNotEmpty {
            var e = error
            e.operation = "refusing to replace"
            e.target = destination.displayPath + "/" + top
                + " (it appeared during the push; what arrived is in \(dir.displayPath)/\(top))"
            throw e
        }
        if let old {
            // Cut off before it was complete: what the earlier top still
            // holds was not vouched for, and stays out of the published
            // top. The next push of the top merges into what was published
            // and cannot use it: it goes, with the stage, and the receiver
            // stops only once it is gone.
            self.old = nil
            logger.info("\(owner): removing \(old.displayPath): it holds files of a push to a receiver that stopped, which this push was cut off before it could check")
            settleNow = false
            removeLater(removal(of: old, in: dir, thenStage: true), settled)
            return
        }
        destination.removeEmptyDirectory(path.description)
    }
}
