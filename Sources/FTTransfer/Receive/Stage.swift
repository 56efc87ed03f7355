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
///   the stage where it is, under its private name; the next push of the
///   same top finds it unlocked, says so, and does not use it.
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

    enum Opening {
        case staged(Stage)
        /// Another session builds this top right now.
        case busy
        /// A stage left by a receiver that stopped mid-push: its files
        /// may be torn, so it is not used.
        case stale(String)
    }

    /// Makes and locks the stage for top directory `top` (one component).
    /// `settled` runs once it is published or given up.
    static func open(top: PeerPath, in destination: Directory, logger: Logger, owner: String,
                     settled: @escaping () -> Void) throws(IOError) -> Opening {
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
        if !made { return .stale(dir.displayPath) }
        return .staged(Stage(top: top.description, path: path, destination: destination, directory: dir,
                             logger: logger, owner: owner, settled: settled))
    }

    private init(top: String, path: PeerPath, destination: Directory, directory: Directory, logger: Logger,
                 owner: String, settled: @escaping () -> Void) {
        self.top = top
        topBytes = Array(top.utf8)
        self.path = path
        self.destination = destination
        self.directory = directory
        self.logger = logger
        self.owner = owner
        self.settled = settled
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
        defer { settled() }
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
        destination.removeEmptyDirectory(path.description)
    }
}
