/// The jobs of one push that write into the destination on the offload
/// thread (making directories, storing small files) and are not back yet;
/// and what waits for there to be none.
///
/// Why: a push that is cut off gives the directories it made their modes
/// and mtimes at once, but a job still out links files into them after
/// that, which moves their mtimes again; the push that resumes could then
/// not tell them from directories it did not leave, and they would keep
/// the mtimes of those links. Their metadata waits for the last job.
///
/// Loop thread only, as `Stage`: counted when a job is sent and when its
/// result comes back; a job's result counts before its stages' (a stage
/// that is left by its last job moves into place, and what waits here
/// still names the directories inside it).
final class OffloadedWrites {
    private var running = 0
    private var waiting: [() -> Void] = []

    func sent() { running += 1 }

    func back() {
        running -= 1
        guard running == 0, !waiting.isEmpty else { return }
        let now = waiting
        waiting = []
        for action in now { action() }
    }

    /// Runs `action` now if no job is out, else once the last is back.
    func whenNoneOut(_ action: @escaping () -> Void) {
        if running == 0 { action() } else { waiting.append(action) }
    }
}
