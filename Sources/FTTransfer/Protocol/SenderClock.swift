/// The sender's deadlines, with no I/O: given the clock and what is in
/// flight, what has run out of time. Checked on every loop tick.
package struct SenderClock: Sendable {
    package var connectTimeoutSeconds: Double
    package var idleTimeoutSeconds: Double

    package init(connectTimeoutSeconds: Double, idleTimeoutSeconds: Double) {
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
    }

    /// A data stream may sit on one chunk this long before its chunks go
    /// on the others.
    package var streamStallSeconds: Double { max(5, idleTimeoutSeconds / 4) }

    package struct Stream: Equatable, Sendable {
        package var connecting: Bool
        package var busy: Bool
        package var lastProgress: UInt64
        package init(connecting: Bool, busy: Bool, lastProgress: UInt64) {
            self.connecting = connecting
            self.busy = busy
            self.lastProgress = lastProgress
        }
    }

    package enum Verdict: Equatable, Sendable {
        case none
        /// The connect is taking too long: cancel it.
        case cancelConnect
        /// A send failed a while ago and the receiver said nothing since:
        /// report the send's error.
        case reportWriteError
        /// Data stream `index` is stuck: end it, its chunks go on the others.
        case killStream(index: Int, why: String)
        /// The push made no progress for too long.
        case idle(seconds: Int)
    }

    package func check(now: UInt64, connected: Bool, connectDeadline: UInt64, writeErrorDeadline: UInt64?,
                      lastActivity: UInt64, streams: [Stream]) -> Verdict {
        if !connected { return now > connectDeadline ? .cancelConnect : .none }
        if let d = writeErrorDeadline, now > d { return .reportWriteError }
        for (i, s) in streams.enumerated() {
            let quiet = Double(now &- s.lastProgress) / 1e9
            if s.connecting, quiet > connectTimeoutSeconds {
                return .killStream(index: i, why: "no answer for \(Int(connectTimeoutSeconds)) s")
            }
            if s.busy, quiet > streamStallSeconds {
                return .killStream(index: i, why: "no progress for \(Int(streamStallSeconds)) s")
            }
        }
        if Double(now &- lastActivity) / 1e9 > idleTimeoutSeconds { return .idle(seconds: Int(idleTimeoutSeconds)) }
        return .none
    }
}
