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

    @Test func identicalByQuickCheck() {
        let p = ReceiverPolicy()
        var e = ManifestEntry(fileID: 1, kind: .file, path: Array("f".utf8), mode: 0o644, size: 10, mtimeSeconds: 5, mtimeNanoseconds: 7)
        let same = ReceiverPolicy.Found(existing: .notDirectory, isRegularFile: true, size: 10, mtimeSeconds: 5, mtimeNanoseconds: 7)
        #expect(p.verdict(e, "f", found: nil) == .proceed)
        #expect(p.verdict(e, "f", found: same) == .identical)
        var newer = same
        newer.mtimeNanoseconds = 8
        #expect(p.verdict(e, "f", found: newer) == .refuse(p.conflict(.file, "f", existing: .notDirectory)!), "same size, other mtime: not identical")
        var longer = same
        longer.size = 11
        #expect(p.verdict(e, "f", found: longer) != .identical)
        var dir = same
        dir.existing = .directory
        dir.isRegularFile = false
        #expect(p.verdict(e, "f", found: dir) == .refuse(p.conflict(.file, "f", existing: .directory)!))
        e.kind = .symlink
        e.linkTarget = Array("t".utf8)
        var link = ReceiverPolicy.Found(existing: .notDirectory, isRegularFile: false, size: 1, mtimeSeconds: 0, mtimeNanoseconds: 0,
                                        linkTarget: Array("t".utf8))
        #expect(p.verdict(e, "f", found: link) == .identical)
        link.linkTarget = Array("u".utf8)
        #expect(p.verdict(e, "f", found: link) != .identical)
        e.kind = .hardlink
        #expect(p.verdict(e, "f", found: ReceiverPolicy.Found(existing: .notDirectory, isRegularFile: true, size: 0, mtimeSeconds: 0,
                                                             mtimeNanoseconds: 0, sameInodeAsSource: true)) == .identical)
    }

    @Test func syncVerdicts() {
        var p = ReceiverPolicy()
        let mib: UInt64 = 1 << 20
        let e = ManifestEntry(fileID: 1, kind: .file, path: Array("f".utf8), mode: 0o644, size: 4 * mib, mtimeSeconds: 9, mtimeNanoseconds: 0)
        let changed = ReceiverPolicy.Found(existing: .notDirectory, isRegularFile: true, size: 3 * mib, mtimeSeconds: 5, mtimeNanoseconds: 0)
        let sync = ReceiverPolicy.SyncRequest(sync: true)
        #expect(p.verdict(e, "f", found: changed, request: sync) == .refuse(p.conflict(.file, "f", existing: .notDirectory)!),
                "patching replaces: the receiver's permission")
        p.overwrite = true
        #expect(p.verdict(e, "f", found: changed, request: sync) == .patch(chunkSize: 1 << 20))
        #expect(p.verdict(e, "f", found: changed) == .proceed, "without --sync a changed file comes whole")
        var small = changed
        small.size = mib - 1
        #expect(p.verdict(e, "f", found: small, request: sync) == .proceed, "a copy under 1 MiB is not worth its chunk list")
        var sameSize = changed
        sameSize.size = e.size
        sameSize.mtimeSeconds = e.mtimeSeconds
        let checksum = ReceiverPolicy.SyncRequest(sync: true, checksum: true)
        #expect(p.verdict(e, "f", found: sameSize, request: checksum) == .compareDigest, "--checksum looks past size and mtime")
        #expect(p.verdict(e, "f", found: sameSize, request: sync) == .identical)
        #expect(ReceiverPolicy.patchChunkSize(for: 2 << 30) == 1 << 20)
        #expect(ReceiverPolicy.patchChunkSize(for: 100 << 30) == 8 << 20, "at most 16,384 chunks")
        #expect((100 << 30) / UInt64(ReceiverPolicy.patchChunkSize(for: 100 << 30)) < 16_384)
    }

    @Test func spaceAcrossBatches() {
        var s = SpaceLedger()
        // Fresh destination, 100 bytes announced: the first batch (30 of them)
        // must find room for the rest too.
        #expect(s.announce(100) == 100)
        #expect(s.required(needed: 30, fileBytes: 30, allNew: true) == 100)
        s.accept(needed: 30, fileBytes: 30, allNew: true)
        // Nothing landed yet: its 30 are still owed, plus the remaining 70.
        #expect(s.required(needed: 20, fileBytes: 20, allNew: true) == 30 + 20 + 50)
        s.land(30)
        #expect(s.required(needed: 20, fileBytes: 20, allNew: true) == 70)
        // A batch with files already there: the total no longer says what
        // the rest needs; only claims count.
        #expect(s.required(needed: 5, fileBytes: 20, allNew: false) == 5)
        s.accept(needed: 5, fileBytes: 20, allNew: false)
        #expect(s.required(needed: 40, fileBytes: 40, allNew: true) == 45)
        // Without a total, only claims and the batch.
        var t = SpaceLedger()
        #expect(t.required(needed: 9, fileBytes: 9, allNew: true) == 9)
        t.accept(needed: 9, fileBytes: 9, allNew: true)
        t.land(20)
        #expect(t.required(needed: 1, fileBytes: 1, allNew: true) == 1, "more landed than claimed never goes negative")
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
        #expect(p.idleLimitSeconds(active: p.maxSessions - 1) == 60, "room left: --timeout")
        #expect(p.idleLimitSeconds(active: p.maxSessions) == 10, "full: the shorter clock")
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
        #expect(p.wait(now: 5) == 0, "nothing sent, nothing to wait for")
        #expect(p.wait(now: 5, next: 500) == 500_000_000, "even the first chunk takes its share of time")
        p.sent(500)
        #expect(p.wait(now: 5 + 500_000_000) == 0)
        #expect(p.wait(now: 5 + 500_000_000, next: 1500) == 1_500_000_000)
        p.sent(1500)
        #expect(p.wait(now: 5 + 1_000_000_000) == 1_000_000_000, "the end waits for what went")
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
