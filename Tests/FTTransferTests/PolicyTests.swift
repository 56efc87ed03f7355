import Testing
import FTTransfer
import FTWire

/// The receiver's rules and the sender's clocks, each decided in pure code.
@Suite struct ReceiverPolicyTests {
    @Test func whatStandsInTheWay() {
        var p = ReceiverPolicy()
        p.destination = "/in"
        #expect(p.conflict(.directory, "d", existing: .directory) == nil, "a push merges into an existing directory")
        #expect(p.conflict(.directory, "d", existing: .notDirectory)?.message == "'d' exists and is not a directory")
        #expect(p.conflict(.file, "f", existing: .directory)?.message == "'f' exists as a directory")
        #expect(p.conflict(.stdin, "f", existing: .directory)?.code == .exists)
        let kept = p.conflict(.file, "f", existing: .notDirectory)
        #expect(kept?.code == .exists && kept?.message.contains("--overwrite") == true && kept?.message.contains("/in") == true)
        p.overwrite = true
        #expect(p.conflict(.file, "f", existing: .notDirectory) == nil)
        #expect(p.conflict(.file, "f", existing: .directory) != nil, "--overwrite never replaces a directory")
    }

    @Test func stdoutSpaceSessionsAndRelays() {
        var p = ReceiverPolicy()
        #expect(p.stdoutRefusal(entries: 3, dataEntries: 2) == nil, "only a stdout receiver counts entries")
        p.toStdout = true
        #expect(p.stdoutRefusal(entries: 1, dataEntries: 1) == nil)
        #expect(p.stdoutRefusal(entries: 2, dataEntries: 1)?.message.contains("2 entries") == true)
        #expect(p.spaceRefusal(needed: 10, free: 10) == nil)
        #expect(p.spaceRefusal(needed: 11, free: 10)?.code == .noSpace)
        p.maxSessions = 2
        #expect(p.sessionLimitRefusal(active: 1) == nil)
        #expect(p.sessionLimitRefusal(active: 2)?.code == .busy)
        #expect(p.relayRefusal(encrypted: false, dataStreams: false)?.message.contains("stdout") == true)
        p.toStdout = false
        #expect(p.relayRefusal(encrypted: false, dataStreams: false) == nil)
        #expect(p.relayRefusal(encrypted: true, dataStreams: false)?.message.contains("encrypted") == true)
        #expect(p.relayRefusal(encrypted: false, dataStreams: true)?.message.contains("-P") == true)
        p.hasCode = false
        #expect(p.relayRefusal(encrypted: false, dataStreams: false)?.message.contains("--no-auth") == true)
    }

    @Test func whatAFailureKeeps() {
        let p = ReceiverPolicy()
        #expect(p.keepsPartials(after: .disconnected("gone", peer: "x"), chain: false))
        #expect(p.keepsPartials(after: .timeout("slow", peer: "x"), chain: false))
        #expect(!p.keepsPartials(after: .disconnected("gone", peer: "x"), chain: true), "a chain host never keeps")
        #expect(!p.keepsPartials(after: .protocolViolation("bad", peer: "x"), chain: false))
        #expect(!p.keepsPartials(after: .verification("hash"), chain: false))
        #expect(!p.keepsPartials(after: .refused(ErrorFrame(.refused, "no"), peer: "x"), chain: false))
        #expect(p.timeoutSeconds(handshaking: true) == 10 && p.timeoutSeconds(handshaking: false) == 60)
    }
}

@Suite struct AuthThrottleTests {
    static let s: UInt64 = 1_000_000_000

    @Test func threeFreeTriesThenDoublingWaits() {
        var t = AuthThrottle()
        for _ in 0..<3 { t.failed("h", now: 0) }
        #expect(t.waitSeconds("h", now: 0) == 0)
        t.failed("h", now: 0)
        #expect(t.waitSeconds("h", now: 0) == 1)
        t.failed("h", now: 2 * Self.s)
        #expect(t.waitSeconds("h", now: 2 * Self.s) == 2)
        #expect(t.waitSeconds("other", now: 2 * Self.s) == 0, "per host")
        for _ in 0..<20 { t.failed("h", now: 3 * Self.s) }
        #expect(t.waitSeconds("h", now: 3 * Self.s) == 60, "capped")
        // Ten minutes after the last wait ended, the count starts again.
        let later = 3 * Self.s + 60 * Self.s + AuthThrottle.forgetAfterNanoseconds + 1
        #expect(t.failed("h", now: later) == 1)
    }
}

@Suite struct PacerTests {
    @Test func chunksStartNoEarlierThanTheRateAllows() {
        var p = Pacer(bytesPerSecond: 1000)
        #expect(p.wait(now: 5) == 0, "the first chunk goes at once")
        p.sent(500)
        #expect(p.wait(now: 5) == 500_000_000)
        #expect(p.wait(now: 5 + 500_000_000) == 0)
        p.sent(1500)
        #expect(p.wait(now: 5 + 1_000_000_000) == 1_000_000_000)
    }
}

@Suite struct DataStreamRulesTests {
    @Test func whichPushesMayUseStreams() {
        #expect(DataStreamRules.refusal(streams: 1, path: .zc, encrypt: true, chain: true) == nil, "no streams asked")
        #expect(DataStreamRules.refusal(streams: 4, path: .sendfile, encrypt: false, chain: false) == nil)
        #expect(DataStreamRules.refusal(streams: 4, path: .splice, encrypt: false, chain: false) == nil)
        #expect(DataStreamRules.refusal(streams: 0, path: .sendfile, encrypt: false, chain: false)?.contains("between 1 and 16") == true)
        #expect(DataStreamRules.refusal(streams: 17, path: .sendfile, encrypt: false, chain: false) != nil)
        #expect(DataStreamRules.refusal(streams: 2, path: .copy, encrypt: false, chain: false)?.contains("not copy") == true)
        #expect(DataStreamRules.refusal(streams: 2, path: .sendfile, encrypt: true, chain: false)?.contains("--encrypt") == true)
        #expect(DataStreamRules.refusal(streams: 2, path: .sendfile, encrypt: false, chain: true)?.contains("--to") == true)
    }
}

@Suite struct SenderClockTests {
    let clock = SenderClock(connectTimeoutSeconds: 10, idleTimeoutSeconds: 60)
    static let s: UInt64 = 1_000_000_000

    @Test func deadlinesInOrder() {
        #expect(clock.check(now: 5, connected: false, connectDeadline: 10, writeErrorDeadline: nil, lastActivity: 0, streams: []) == .none)
        #expect(clock.check(now: 11, connected: false, connectDeadline: 10, writeErrorDeadline: nil, lastActivity: 0, streams: []) == .cancelConnect)
        #expect(clock.check(now: 11, connected: true, connectDeadline: 10, writeErrorDeadline: 10, lastActivity: 11, streams: [])
                == .reportWriteError)
        let quiet = SenderClock.Stream(connecting: true, busy: false, lastProgress: 0)
        #expect(clock.check(now: 11 * Self.s, connected: true, connectDeadline: 0, writeErrorDeadline: nil, lastActivity: 11 * Self.s,
                            streams: [quiet]) == .killStream(index: 0, why: "no answer for 10 s"))
        let stuck = SenderClock.Stream(connecting: false, busy: true, lastProgress: 0)
        let idle = SenderClock.Stream(connecting: false, busy: false, lastProgress: 0)
        #expect(clock.check(now: 16 * Self.s, connected: true, connectDeadline: 0, writeErrorDeadline: nil, lastActivity: 16 * Self.s,
                            streams: [idle, stuck]) == .killStream(index: 1, why: "no progress for 15 s"))
        #expect(clock.check(now: 61 * Self.s, connected: true, connectDeadline: 0, writeErrorDeadline: nil, lastActivity: 0,
                            streams: [idle]) == .idle(seconds: 60))
    }
}
