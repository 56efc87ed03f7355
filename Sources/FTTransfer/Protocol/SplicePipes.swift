/// The receiver's splice pipeline for one chunk, as a plain state machine.
///
/// Several pipes let the socket drain into one pipe while another
/// pipe is written to the file, so the network and the page cache work at
/// the same time. Socket reads stay strictly in order (one fill at a time).
/// File writes also go one at a time, lowest offset first: concurrent
/// writers to one file only spin on its inode lock (measured: 5% of the
/// receiver's CPU in rwsem_spin_on_owner with concurrent drains).
///
/// A relaying receiver gives each pipe a twin: a filled pipe is
/// first tee'd into it (the bytes are referenced, not copied), then the
/// first pipe goes to the file and the second to the next host's socket.
/// Sends to the next host go one at a time in stream order, and only when
/// the driver says that socket is free of control frames.
package struct SplicePipes {
    package struct PipeState: Equatable, Sendable {
        /// Bytes in the pipe not yet written to the file.
        var inPipe = 0
        /// File offset of the first of those bytes.
        var offset: UInt64 = 0
        var filling = false
        var draining = false
        /// Relay: the bytes are in the twin too.
        var teed = false
        var teeing = false
        /// Relay: bytes in the twin not yet sent on, and the stream
        /// offset of the first of them.
        var toSend = 0
        var sendOffset: UInt64 = 0
        var sending = false

        var idle: Bool { !filling && !draining && !teeing && !sending }
        var free: Bool { idle && inPipe == 0 && toSend == 0 }
    }

    package enum Action: Equatable, Sendable {
        /// socket → the pipe, up to `length` bytes.
        case fill(pipe: Int, length: Int)
        /// the pipe → file at `offset`.
        case drain(pipe: Int, length: Int, offset: UInt64)
        /// Relay: the pipe → its twin, all `length` bytes.
        case tee(pipe: Int, length: Int)
        /// Relay: its twin → the next host, up to `length`.
        case send(pipe: Int, length: Int)
    }

    package private(set) var pipes: [PipeState]
    package let capacity: Int
    package private(set) var nextOffset: UInt64 = 0
    /// Bytes still to pull from the socket.
    package private(set) var remaining: UInt64 = 0
    /// Whether bytes are relayed; `dropRelay()` ends it for good.
    package private(set) var relaying: Bool

    package init(pipes: Int, capacity: Int, relaying: Bool = false) {
        precondition(pipes > 0 && capacity > 0)
        self.pipes = Array(repeating: PipeState(), count: pipes)
        self.capacity = capacity
        self.relaying = relaying
    }

    /// Every byte pulled, written (and relayed), nothing in flight.
    package var finished: Bool { remaining == 0 && pipes.allSatisfy(\.free) }

    package mutating func start(offset: UInt64, length: UInt64) {
        precondition(finished, "a chunk is still moving")
        nextOffset = offset
        remaining = length
    }

    /// A fill moved `bytes` (> 0) from the socket into the pipe.
    package mutating func filled(pipe i: Int, bytes: Int) {
        precondition(bytes > 0 && UInt64(bytes) <= remaining)
        pipes[i].filling = false
        pipes[i].inPipe += bytes
        pipes[i].teed = !relaying
        nextOffset += UInt64(bytes)
        remaining -= UInt64(bytes)
    }

    /// A drain wrote `bytes` (> 0); returns the range now stored.
    package mutating func drained(pipe i: Int, bytes: Int) -> Range<UInt64> {
        precondition(bytes > 0 && bytes <= pipes[i].inPipe)
        pipes[i].draining = false
        let stored = pipes[i].offset..<pipes[i].offset + UInt64(bytes)
        pipes[i].offset += UInt64(bytes)
        pipes[i].inPipe -= bytes
        return stored
    }

    /// A tee copied `bytes`; false if that was not all of the pipe's bytes
    /// (the twin was not empty or too small: the relay cannot go on).
    package mutating func teed(pipe i: Int, bytes: Int) -> Bool {
        pipes[i].teeing = false
        guard relaying, bytes == pipes[i].inPipe else { return false }
        pipes[i].teed = true
        pipes[i].toSend = bytes
        pipes[i].sendOffset = pipes[i].offset
        return true
    }

    /// A send to the next host moved `bytes` (> 0) out of the twin.
    package mutating func sent(pipe i: Int, bytes: Int) {
        precondition(bytes > 0 && bytes <= pipes[i].toSend)
        pipes[i].sending = false
        pipes[i].toSend -= bytes
        pipes[i].sendOffset += UInt64(bytes)
    }

    /// The next host is gone: forget what was still to go to it. Operations
    /// on the twins still in flight are `abandoned(pipe:)` when they
    /// complete.
    package mutating func dropRelay() {
        relaying = false
        for i in pipes.indices {
            pipes[i].toSend = 0
            pipes[i].teed = true
        }
    }

    /// A tee or send completed after `dropRelay()`.
    package mutating func abandoned(pipe i: Int) {
        pipes[i].teeing = false
        pipes[i].sending = false
    }

    /// What to queue now. `canSend`: the next host's socket has no control
    /// frame in flight, so payload may follow the header already sent.
    package mutating func next(canSend: Bool = false) -> [Action] {
        var actions: [Action] = []
        if relaying {
            // Tee as soon as a pipe is filled: its file drain waits for it.
            for i in pipes.indices where !pipes[i].filling && !pipes[i].teeing && !pipes[i].teed && pipes[i].inPipe > 0 {
                pipes[i].teeing = true
                actions.append(.tee(pipe: i, length: pipes[i].inPipe))
            }
            if canSend, !pipes.contains(where: \.sending), let i = firstUnsent(), pipes[i].toSend > 0 {
                pipes[i].sending = true
                actions.append(.send(pipe: i, length: pipes[i].toSend))
            }
        }
        if !pipes.contains(where: \.draining),
           let i = pipes.indices.filter({ !pipes[$0].draining && !pipes[$0].filling && !pipes[$0].teeing && pipes[$0].teed && pipes[$0].inPipe > 0 })
               .min(by: { pipes[$0].offset < pipes[$1].offset }) {
            pipes[i].draining = true
            actions.append(.drain(pipe: i, length: pipes[i].inPipe, offset: pipes[i].offset))
        }
        if !pipes.contains(where: \.filling), remaining > 0, let i = pipes.firstIndex(where: \.free) {
            pipes[i].filling = true
            pipes[i].offset = nextOffset
            pipes[i].teed = false
            actions.append(.fill(pipe: i, length: Int(min(remaining, UInt64(capacity)))))
        }
        return actions
    }

    /// The pipe holding the earliest bytes not yet sent on (filled or not
    /// yet tee'd), so sends keep stream order.
    private func firstUnsent() -> Int? {
        pipes.indices.filter { i in
            pipes[i].toSend > 0 || (!pipes[i].teed && (pipes[i].filling || pipes[i].inPipe > 0))
        }.min { a, b in key(a) < key(b) }
    }

    private func key(_ i: Int) -> UInt64 { pipes[i].toSend > 0 ? pipes[i].sendOffset : pipes[i].offset }
}
