/// A chunk of entry `id`: what a connection carries, and what goes again
/// on another data stream when one breaks.
package struct FileChunk: Equatable, Sendable {
    package var id: UInt32
    package var offset: UInt64
    package var length: Int

    package init(id: UInt32, offset: UInt64, length: Int) {
        self.id = id
        self.offset = offset
        self.length = length
    }
}

/// What the push's writes do next, with no I/O. Control frames go first
/// whenever the connection is free; then the plan's steps in order. Chunks
/// go on a free data stream (`-P`), and on the push's own connection only
/// when there is none left: a chunk there would hold the control frames
/// back. `--limit` spaces chunks out. Batches' plans queue up as their
/// answers arrive; `end` goes once the last is done.
package struct WriteScheduler: Sendable {
    /// What the driver sees at this moment.
    package struct Situation: Equatable, Sendable {
        /// Control frames wait in the channel.
        package var controlQueued = false
        /// Something is being written on the push's own connection.
        package var writeBusy = false
        /// Sealed: every record buffer is lent to the channel, queued or
        /// being sent. Nothing else may start, but queued frames must
        /// still be flushed: that send is what gives the buffers back.
        package var recordsLent = false
        /// The plans may move on (`end` not sent).
        package var sending = true
        /// A data stream ready to take a chunk.
        package var idleStream: Int?
        /// No data stream is connecting or alive (or there never were any).
        package var streamsGone = true
        package var now: UInt64 = 0

        package init(controlQueued: Bool = false, writeBusy: Bool = false, recordsLent: Bool = false, sending: Bool = true,
                    idleStream: Int? = nil, streamsGone: Bool = true, now: UInt64 = 0) {
            self.controlQueued = controlQueued
            self.writeBusy = writeBusy
            self.recordsLent = recordsLent
            self.sending = sending
            self.idleStream = idleStream
            self.streamsGone = streamsGone
            self.now = now
        }
    }

    package enum Decision: Equatable, Sendable {
        /// Send the queued control frames.
        case flushControl
        /// Send this chunk on data stream `stream`, or on the push's own
        /// connection (nil).
        case chunk(FileChunk, stream: Int?)
        /// A step that is not a chunk, on the push's own connection.
        case step(SendPlan.Step)
        /// Every plan is done and no more will come: send `end`.
        case end
        /// Arm the `--limit` timer; call `paceTimerFired()` when it fires.
        case pace(nanoseconds: UInt64)
        /// Nothing can go now.
        case wait
    }

    private var plans: [SendPlan] = []
    private var planned = false
    private var ended = false
    /// The plans' next step, taken out and not yet handed on.
    private var held: SendPlan.Step?
    /// Chunks of a broken data stream, to send again first.
    private var retry: [FileChunk] = []
    private var pacer: Pacer?
    private var pacing = false

    package init(rateLimit: UInt64? = nil) {
        pacer = rateLimit.flatMap { $0 > 0 ? Pacer(bytesPerSecond: $0) : nil }
    }

    package mutating func next(_ s: Situation) -> Decision {
        if !s.writeBusy, !pacing, s.controlQueued { return .flushControl }
        let busy = s.writeBusy || s.recordsLent || pacing
        if held == nil, s.sending { held = nextStep() }
        var chunk: FileChunk?
        if case .chunk(let id, let offset, let length) = held {
            chunk = FileChunk(id: id, offset: offset, length: Int(length))
        }
        if !retry.isEmpty || chunk != nil {
            guard s.idleStream != nil || (!busy && s.streamsGone) else { return .wait }
            guard !pacing else { return .wait }
            let next = UInt64(retry.first?.length ?? chunk?.length ?? 0)
            if let wait = paceWait(now: s.now, next: next) { return wait }
            let c: FileChunk
            if let planned = chunk, retry.isEmpty {
                c = planned
                held = nil
            } else {
                c = retry.removeFirst()
            }
            return .chunk(c, stream: s.idleStream)
        }
        guard !busy else { return .wait }
        guard let step = held else {
            guard s.sending, planned, plans.isEmpty, retry.isEmpty, !ended else { return .wait }
            // The end waits until what was sent is due: a small push is
            // paced too.
            if let wait = paceWait(now: s.now, next: 0) { return wait }
            ended = true
            return .end
        }
        // A small-files frame (counted once built, through chunkOut) goes
        // when what went before it is due.
        if case .small = step, let wait = paceWait(now: s.now, next: 0) { return wait }
        held = nil
        return .step(step)
    }

    /// `.pace` if `--limit` says wait before `next` more bytes, else nil.
    private mutating func paceWait(now: UInt64, next: UInt64) -> Decision? {
        guard var p = pacer else { return nil }
        let wait = p.wait(now: now, next: next)
        pacer = p
        guard wait > 0 else { return nil }
        pacing = true
        return .pace(nanoseconds: wait)
    }

    private mutating func nextStep() -> SendPlan.Step? {
        while !plans.isEmpty {
            if let step = plans[0].next() { return step }
            plans.removeFirst()
        }
        return nil
    }

    /// A batch's writes, after the ones queued so far.
    package mutating func add(_ plan: SendPlan) {
        precondition(!planned)
        plans.append(plan)
    }

    /// No more plans will come (the scan is done and every batch planned).
    package mutating func allPlanned() { planned = true }

    /// A step handed out cannot go yet (a trailer whose digest is still
    /// being computed): it is the next one again.
    package mutating func putBack(_ step: SendPlan.Step) {
        precondition(held == nil)
        held = step
    }

    package mutating func paceTimerFired() { pacing = false }

    /// A chunk is out: it counts against `--limit`.
    package mutating func chunkOut(_ bytes: Int) { pacer?.sent(UInt64(bytes)) }

    /// A data stream broke: these of its chunks go again.
    package mutating func resend(_ chunks: [FileChunk]) { retry.append(contentsOf: chunks) }

    /// Entries are acknowledged: none of their chunks need go again.
    package mutating func forget(_ ids: Set<UInt32>) { retry.removeAll { ids.contains($0.id) } }
    package var hasRetries: Bool { !retry.isEmpty }
}
