import Testing
@testable import FTTransfer

/// What waits in `OffloadedWrites` runs when, and only when, the jobs it
/// waits for are back: a directory's metadata after the last change to it.
@Suite struct OffloadedWritesTests {
    @Test func withNothingOutBothRunAtOnce() {
        let writes = OffloadedWrites()
        var ran: [String] = []
        writes.whenNoneOut { ran.append("all") }
        writes.whenNoRemovalsOut { ran.append("removals") }
        #expect(ran == ["all", "removals"])
    }

    /// The per-batch metadata waits for prunes and sweeps, not for store
    /// jobs of later batches; the cut-off metadata waits for both kinds.
    @Test func eachWaitsForItsOwnKinds() {
        let writes = OffloadedWrites()
        var ran: [String] = []
        writes.sent(.store)
        writes.sent(.removal)
        writes.sent(.removal)
        writes.whenNoRemovalsOut { ran.append("batch") }
        writes.whenNoneOut { ran.append("cut off") }
        writes.whenNoRemovalsOut { ran.append("done") }
        writes.back(.removal)
        #expect(ran == [])
        writes.back(.removal)
        #expect(ran == ["batch", "done"], "in the order asked")
        #expect(writes.removals == 0)
        writes.sent(.store)
        writes.back(.store)
        #expect(ran == ["batch", "done"], "a store job is still out")
        writes.back(.store)
        #expect(ran == ["batch", "done", "cut off"])
    }

    /// Each action runs once, and one asked for while the last ones run
    /// (a job sent from inside them) waits for that job.
    @Test func anActionRunsOnceAndOneAskedWhileRunningWaitsForNewJobs() {
        let writes = OffloadedWrites()
        var ran = 0
        writes.sent(.removal)
        writes.whenNoRemovalsOut {
            ran += 1
            writes.sent(.removal)
            writes.whenNoRemovalsOut { ran += 10 }
        }
        writes.back(.removal)
        #expect(ran == 1)
        writes.back(.removal)
        #expect(ran == 11)
        writes.sent(.removal)
        writes.back(.removal)
        #expect(ran == 11)
    }
}
