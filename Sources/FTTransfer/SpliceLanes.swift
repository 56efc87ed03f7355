/// The receiver's splice pipeline for one chunk, as a plain state machine.
///
/// Several pipes ("lanes") let the socket drain into one pipe while another
/// pipe is written to the file, so the network and the page cache work at
/// the same time. Socket reads stay strictly in order (one fill at a time).
/// File writes also go one at a time, lowest offset first: concurrent
/// writers to one file only spin on its inode lock (measured: 5% of the
/// receiver's CPU in rwsem_spin_on_owner with concurrent drains).
public struct SpliceLanes {
    public struct Lane: Equatable, Sendable {
        /// Bytes in the pipe not yet written to the file.
        var inPipe = 0
        /// File offset of the first of those bytes.
        var offset: UInt64 = 0
        var filling = false
        var draining = false

        var idle: Bool { !filling && !draining }
    }

    public enum Action: Equatable, Sendable {
        /// socket → the lane's pipe, up to `length` bytes.
        case fill(lane: Int, length: Int)
        /// the lane's pipe → file at `offset`.
        case drain(lane: Int, length: Int, offset: UInt64)
    }

    public private(set) var lanes: [Lane]
    public let capacity: Int
    public private(set) var nextOffset: UInt64 = 0
    /// Bytes still to pull from the socket.
    public private(set) var remaining: UInt64 = 0

    public init(lanes: Int, capacity: Int) {
        precondition(lanes > 0 && capacity > 0)
        self.lanes = Array(repeating: Lane(), count: lanes)
        self.capacity = capacity
    }

    /// Every byte pulled and written, nothing in flight.
    public var finished: Bool { remaining == 0 && lanes.allSatisfy { $0.idle && $0.inPipe == 0 } }

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

    /// What to queue now.
    public mutating func next() -> [Action] {
        var actions: [Action] = []
        if !lanes.contains(where: \.draining),
           let i = lanes.indices.filter({ lanes[$0].idle && lanes[$0].inPipe > 0 }).min(by: { lanes[$0].offset < lanes[$1].offset }) {
            lanes[i].draining = true
            actions.append(.drain(lane: i, length: lanes[i].inPipe, offset: lanes[i].offset))
        }
        if !lanes.contains(where: \.filling), remaining > 0,
           let i = lanes.firstIndex(where: { $0.idle && $0.inPipe == 0 }) {
            lanes[i].filling = true
            lanes[i].offset = nextOffset
            actions.append(.fill(lane: i, length: Int(min(remaining, UInt64(capacity)))))
        }
        return actions
    }
}
