/// `--limit`: when the next chunk may start so that the bytes sent so far
/// stay at or under the rate. Pure: the caller passes the clock.
package struct Pacer: Sendable {
    package let bytesPerSecond: UInt64
    private var start: UInt64?
    package private(set) var sent: UInt64 = 0

    package init(bytesPerSecond: UInt64) {
        precondition(bytesPerSecond > 0)
        self.bytesPerSecond = bytesPerSecond
    }

    /// Nanoseconds to wait before `next` more bytes may go (0: go now).
    /// They go at the end of their own share of time, not the start, so a
    /// push of N bytes takes at least N / rate, even one chunk long; the
    /// push's end waits with `next` 0 for what went before.
    package mutating func wait(now: UInt64, next: UInt64 = 0) -> UInt64 {
        if start == nil { start = now }
        let due = start! + UInt64(Double(sent + next) / Double(bytesPerSecond) * 1e9)
        return now < due ? due - now : 0
    }

    /// `bytes` went out.
    package mutating func sent(_ bytes: UInt64) { sent += bytes }
}
