/// The jobs of one push that change what a destination directory holds on
/// the offload thread and are not back yet, and what waits for them.
///
/// Why: each change moves the directory's mtime, so a directory's mode and
/// mtime go on only after the last job that could touch it.
/// - `.store` (making directories, storing small files): a push that is
///   cut off gives the directories it made their metadata at once, but a
///   job still out links files into them after that; the push that resumes
///   could then not tell them from directories it did not leave.
/// - `.removal` (`--delete`'s prunes, sweeps of stale partials): started
///   when a directory is reviewed, they can outlast the acknowledgement of
///   its batch, after which it gets its metadata. A prune of 20,000 strays
///   moved the mtime just set in 3 of 3 runs. A store job of a batch is
///   back before that batch is acknowledged, so the per-batch metadata
///   waits for removals only, and the store jobs of later batches (which
///   write into other directories) do not hold it up. Directory metadata
///   runs on the same queue as removals and counts as one: what waits for
///   removals (the push's end, its stages' publishing) waits for it too.
///
/// Loop thread only, as `Stage`: counted when a job is sent and when its
/// result comes back; a job's result counts before its stages' (a stage
/// that is left by its last job moves into place, and what waits here
/// still names the directories inside it).
final class OffloadedWrites {
    enum Kind { case store, removal }

    private var stores = 0
    private(set) var removals = 0
    private var waitingForAll: [() -> Void] = []
    private var waitingForRemovals: [() -> Void] = []

    func sent(_ kind: Kind) { count(kind, 1) }

    /// A job that writes into `stages`: counted out, with the stages held
    /// open (none publishes while it runs). `submit` hands it to the
    /// offload with the continuation to call on the loop; there its result
    /// counts back before the stages are let go, then `then` has it.
    func run<T>(_ kind: Kind, into stages: [Stage], _ submit: (@escaping (T) -> Void) -> Void,
                then: @escaping (T) -> Void) {
        for s in stages { s.entered() }
        sent(kind)
        submit { [self] result in
            back(kind)
            for s in stages { s.left() }
            then(result)
        }
    }

    func back(_ kind: Kind) {
        count(kind, -1)
        if removals == 0 { for action in Self.take(&waitingForRemovals) { action() } }
        // Checked again: what just ran may have sent a job.
        if removals == 0, stores == 0 { for action in Self.take(&waitingForAll) { action() } }
    }

    private func count(_ kind: Kind, _ delta: Int) {
        switch kind {
        case .store: stores += delta
        case .removal: removals += delta
        }
    }

    /// Runs `action` now if no job is out, else once the last is back.
    func whenNoneOut(_ action: @escaping () -> Void) {
        if stores == 0, removals == 0 { action() } else { waitingForAll.append(action) }
    }

    /// Runs `action` now if no removal is out, else once the last is back.
    func whenNoRemovalsOut(_ action: @escaping () -> Void) {
        if removals == 0 { action() } else { waitingForRemovals.append(action) }
    }

    /// Taken out before any runs: an action may ask to wait again, which
    /// appends to the list it came from.
    private static func take(_ list: inout [() -> Void]) -> [() -> Void] {
        defer { list = [] }
        return list
    }
}
