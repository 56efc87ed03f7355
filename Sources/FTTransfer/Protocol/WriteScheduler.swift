/// A chunk of entry `index`: what a connection carries, and what goes
/// again on another data stream when one breaks.
public struct FileChunk: Equatable, Sendable {
    public var index: Int
    public var offset: UInt64
    public var length: Int

    public init(index: Int, offset: UInt64, length: Int) {
        self.index = index
        self.offset = offset
        self.length = length
    }
}

/// What the push's writes do next, with no I/O. Control frames go first
/// whenever the connection is free; then the plan's steps in order. Chunks
/// go on a free data stream (`-P`), and on the push's own connection only
/// when there is none left: a chunk there would hold the control frames
/// back. `--limit` spaces chunks out.
public struct WriteScheduler: Sendable {
    /// What the driver sees at this moment.
    public struct Situation: Equatable, Sendable {
        /// Control frames wait in the channel.
        public var controlQueued = false
        /// Something is being written on the push's own connection.
        public var writeBusy = false
        /// The plan may move on (the receiver accepted, `end` not sent).
        public var sending = true
        /// A data stream ready to take a chunk.
        public var idleStream: Int?
        /// No data stream is connecting or alive (or there never were any).
        public var streamsGone = true
        public var now: UInt64 = 0

        public init(controlQueued: Bool = false, writeBusy: Bool = false, sending: Bool = true, idleStream: Int? = nil,
                    streamsGone: Bool = true, now: UInt64 = 0) {
            self.controlQueued = controlQueued
            self.writeBusy = writeBusy
            self.sending = sending
            self.idleStream = idleStream
            self.streamsGone = streamsGone
            self.now = now
        }
    }

    public enum Decision: Equatable, Sendable {
        /// Send the queued control frames.
        case flushControl
        /// Send this chunk on data stream `stream`, or on the push's own
        /// connection (nil).
        case chunk(FileChunk, stream: Int?)
        /// A step that is not a chunk, on the push's own connection.
        case step(SendPlan.Step)
        /// Arm the `--limit` timer; call `paceTimerFired()` when it fires.
        case pace(nanoseconds: UInt64)
        /// Nothing can go now.
        case wait
    }

    private var plan: SendPlan
    /// The plan's next step, taken out and not yet handed on.
    private var held: SendPlan.Step?
    /// Chunks of a broken data stream, to send again first.
    private var retry: [FileChunk] = []
    private var pacer: Pacer?
    private var pacing = false

    public init(plan: SendPlan, rateLimit: UInt64? = nil) {
        self.plan = plan
        pacer = rateLimit.flatMap { $0 > 0 ? Pacer(bytesPerSecond: $0) : nil }
    }

    public mutating func next(_ s: Situation) -> Decision {
        let busy = s.writeBusy || pacing
        if !busy, s.controlQueued { return .flushControl }
        if held == nil, s.sending { held = plan.next() }
        var planned: FileChunk?
        if case .chunk(let index, let offset, let length) = held {
            planned = FileChunk(index: index, offset: offset, length: Int(length))
        }
        if !retry.isEmpty || planned != nil {
            guard s.idleStream != nil || (!busy && s.streamsGone) else { return .wait }
            guard !pacing else { return .wait }
            if var p = pacer {
                let wait = p.wait(now: s.now)
                pacer = p
                if wait > 0 {
                    pacing = true
                    return .pace(nanoseconds: wait)
                }
            }
            let c: FileChunk
            if retry.isEmpty {
                c = planned!
                held = nil
            } else {
                c = retry.removeFirst()
            }
            return .chunk(c, stream: s.idleStream)
        }
        guard let step = held, !busy else { return .wait }
        held = nil
        return .step(step)
    }

    /// A step handed out cannot go yet (a trailer whose digest is still
    /// being computed): it is the next one again.
    public mutating func putBack(_ step: SendPlan.Step) {
        precondition(held == nil)
        held = step
    }

    public mutating func paceTimerFired() { pacing = false }

    /// A chunk is out: it counts against `--limit`.
    public mutating func chunkOut(_ bytes: Int) { pacer?.sent(UInt64(bytes)) }

    /// A data stream broke: these of its chunks go again.
    public mutating func resend(_ chunks: [FileChunk]) { retry.append(contentsOf: chunks) }

    /// Entry `index` is acknowledged: none of its chunks need go again.
    public mutating func forget(_ index: Int) { retry.removeAll { $0.index == index } }

    /// Files sent in chunks, in the order they go out.
    public var chunkedFiles: [Int] { plan.chunkedFiles }
}
