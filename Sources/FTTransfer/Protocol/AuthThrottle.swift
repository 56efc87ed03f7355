/// Wrong codes per host, to slow down guessing: after three wrong codes
/// from one host, each further attempt from it waits twice as long as the
/// last (1 s, 2 s, … up to 60 s). A right code does not reset the count;
/// ten minutes without a failure do. Pure: the caller passes the clock.
package struct AuthThrottle: Sendable {
    package static let freeTries = 3
    package static let maxWaitSeconds = 60
    package static let forgetAfterNanoseconds: UInt64 = 600_000_000_000

    private var hosts: [String: (count: Int, until: UInt64)] = [:]

    package init() {}

    /// Records a wrong code from `host`; returns how many it has sent.
    @discardableResult
    package mutating func failed(_ host: String, now: UInt64) -> Int {
        var entry = hosts[host] ?? (0, 0)
        if entry.until != 0, now > entry.until + Self.forgetAfterNanoseconds { entry = (0, 0) }
        entry.count += 1
        if entry.count > Self.freeTries {
            let seconds = min(Self.maxWaitSeconds, 1 << min(entry.count - Self.freeTries - 1, 6))
            entry.until = now + UInt64(seconds) * 1_000_000_000
        } else {
            entry.until = now
        }
        hosts[host] = entry
        return entry.count
    }

    /// Seconds `host` must still wait before it may try again (0: now).
    package func waitSeconds(_ host: String, now: UInt64) -> Int {
        guard let e = hosts[host], e.count > Self.freeTries, e.until > now else { return 0 }
        return Int((e.until - now + 999_999_999) / 1_000_000_000)
    }
}
