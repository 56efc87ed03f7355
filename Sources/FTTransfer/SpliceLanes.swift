/// The receiver's splice pipeline for one chunk, as a plain state machine.
///
/// Several pipes ("lanes") let the socket drain into one pipe while another
/// pipe is written to the file, so the network and the page cache work at
/// the same time. Socket reads stay strictly in order (one fill at a time).
/// File writes also go one at a time, lowest offset first: concurrent
/// writers to one file only spin on its inode lock (measured: 5% of the
/// receiver's CPU in rwsem_spin_on_owner with concurrent drains).
///
/// A relaying receiver gives each lane a second pipe: a filled lane is
/// first tee'd into it (the bytes are referenced, not copied), then the
/// first pipe goes to the file and the second to the next host's socket.
/// Sends to the next host go one at a time in stream order, and only when
/// the driver says that socket is free of control frames.
public struct SpliceLanes {
    public struct Lane: Equatable, Sendable {
        /// Bytes in the pipe not yet written to the file.
        var inPipe = 0
        /// File offset of the first of those bytes.
        var offset: UInt64 = 0
        var filling = false
        var draining = false
        /// Relay: the bytes are in the second pipe too.
        var teed = false
        var teeing = false
        /// Relay: bytes in the second pipe not yet sent on, and the stream
        /// offset of the first of them.
        var toSend = 0
        var sendOffset: UInt64 = 0
        var sending = false

        var idle: Bool { !filling && !draining && !teeing && !sending }
        var free: Bool { idle && inPipe == 0 && toSend == 0 }
    }

    public enum Action: Equatable, Sendable {
        /// socket → the lane's pipe, up to `length` bytes.
        case fill(lane: Int, length: Int)
        /// the lane's pipe → file at `offset`.
        case drain(lane: Int, length: Int, offset: UInt64)
        /// Relay: the lane's pipe → its second pipe, all `length` bytes.
        case tee(lane: Int, length: Int)
        /// Relay: the lane's second pipe → the next host, up to `length`.
        case send(lane: Int, length: Int)
    }

    public private(set) var lanes: [Lane]
    public let capacity: Int
    public private(set) var nextOffset: UInt64 = 0
    /// Bytes still to pull from the socket.
    public private(set) var remaining: UInt64 = 0
    /// Whether bytes are relayed; `dropRelay()` ends it for good.
    public private(set) var relaying: Bool

    public init(lanes: Int, capacity: Int, relaying: Bool = false) {
        precondition(lanes > 0 && capacity > 0)
        self.lanes = Array(repeating: Lane(), count: lanes)
        self.capacity = capacity
        self.relaying = relaying
    }

    /// Every byte pulled, written (and relayed), nothing in flight.
    public var finished: Bool { remaining == 0 && lanes.allSatisfy(\.free) }

    public mutating func start(offset: UInt64, length: UInt64) {
        precondition(finished, "a chunk is still moving")
        nextOffset = offset
        remaining = length
    }

    /// A fill moved `bytes` (> 0) from the socket into the lane's pipe.
    public mutating func filled(lane i: Int, bytes: Int) {
        precondition(bytes > 0 && UInt64(bytes) <= remaining)
        lanes[i].filling = false
        lanes[i].inPipe += bytes
        lanes[i].teed = !relaying
        nextOffset += UInt64(bytes)
        remaining -= UInt64(bytes)
    }

    /// A drain wrote `bytes` (> 0); returns the range now stored.
    public mutating func drained(lane i: Int, bytes: Int) -> Range<UInt64> {
        precondition(bytes > 0 && bytes <= lanes[i].inPipe)
        lanes[i].draining = false
        let stored = lanes[i].offset..<lanes[i].offset + UInt64(bytes)
        lanes[i].offset += UInt64(bytes)
        lanes[i].inPipe -= bytes
        return stored
    }

    /// A tee copied `bytes`; false if that was not all of the lane's bytes
    /// (the second pipe was not empty or too small: the relay cannot go on).
    public mutating func teed(lane i: Int, bytes: Int) -> Bool {
        lanes[i].teeing = false
        guard relaying, bytes == lanes[i].inPipe else { return false }
        lanes[i].teed = true
        lanes[i].toSend = bytes
        lanes[i].sendOffset = lanes[i].offset
        return true
    }

    /// A send to the next host moved `bytes` (> 0) out of the second pipe.
    public mutating func sent(lane i: Int, bytes: Int) {
        precondition(bytes > 0 && bytes <= lanes[i].toSend)
        lanes[i].sending = false
        lanes[i].toSend -= bytes
        lanes[i].sendOffset += UInt64(bytes)
    }

    /// The next host is gone: forget what was still to go to it. Operations
    /// on the second pipes still in flight are `abandoned(lane:)` when they
    /// complete.
    public mutating func dropRelay() {
        relaying = false
        for i in lanes.indices {
            lanes[i].toSend = 0
            lanes[i].teed = true
        }
    }

    /// A tee or send completed after `dropRelay()`.
    public mutating func abandoned(lane i: Int) {
        lanes[i].teeing = false
        lanes[i].sending = false
    }

    /// What to queue now. `canSend`: the next host's socket has no control
    /// frame in flight, so payload may follow the header already sent.
    public mutating func next(canSend: Bool = false) -> [Action] {
        var actions: [Action] = []
        if relaying {
            // Tee as soon as a lane is filled: its file drain waits for it.
            for i in lanes.indices where !lanes[i].filling && !lanes[i].teeing && !lanes[i].teed && lanes[i].inPipe > 0 {
                lanes[i].teeing = true
                actions.append(.tee(lane: i, length: lanes[i].inPipe))
            }
            if canSend, !lanes.contains(where: \.sending), let i = firstUnsent(), lanes[i].toSend > 0 {
                lanes[i].sending = true
                actions.append(.send(lane: i, length: lanes[i].toSend))
            }
        }
        if !lanes.contains(where: \.draining),
           let i = lanes.indices.filter({ !lanes[$0].draining && !lanes[$0].filling && !lanes[$0].teeing && lanes[$0].teed && lanes[$0].inPipe > 0 })
               .min(by: { lanes[$0].offset < lanes[$1].offset }) {
            lanes[i].draining = true
            actions.append(.drain(lane: i, length: lanes[i].inPipe, offset: lanes[i].offset))
        }
        if !lanes.contains(where: \.filling), remaining > 0, let i = lanes.firstIndex(where: \.free) {
            lanes[i].filling = true
            lanes[i].offset = nextOffset
            lanes[i].teed = false
            actions.append(.fill(lane: i, length: Int(min(remaining, UInt64(capacity)))))
        }
        return actions
    }

    /// The lane holding the earliest bytes not yet sent on (filled or not
    /// yet tee'd), so sends keep stream order.
    private func firstUnsent() -> Int? {
        lanes.indices.filter { i in
            lanes[i].toSend > 0 || (!lanes[i].teed && (lanes[i].filling || lanes[i].inPipe > 0))
        }.min { a, b in key(a) < key(b) }
    }

    private func key(_ i: Int) -> UInt64 { lanes[i].toSend > 0 ? lanes[i].sendOffset : lanes[i].offset }
}
