import Testing
import FTTransfer
import FTWire

func entryOf(_ id: UInt32, _ size: UInt64, kind: ManifestEntry.Kind = .file) -> ManifestEntry {
    ManifestEntry(fileID: id, kind: kind, path: Array("f\(id)".utf8), mode: 0o644, size: size, mtimeSeconds: 0, mtimeNanoseconds: 0)
}

@Suite struct SenderMachineTests {
    let digest = Digest128(high: 1, low: 2)

    @Test func acceptThenAcksThenDone() {
        var m = SenderMachine(entries: [entryOf(1, 5), entryOf(2, 0, kind: .directory), entryOf(3, 9)])
        #expect(m.receive(.accept(Accept())) == .startData(Accept()))
        #expect(m.phase == .sending)
        let ack = FileAck(fileID: 3, status: .committed, digest: digest)
        #expect(m.receive(.fileAck(ack)) == .acknowledged(index: 2, ack))
        m.endSent()
        #expect(m.phase == .awaitingDone)
        guard case .violation(let early) = m.receive(.done(Done(files: 2, bytes: 14))) else {
            Issue.record("done before every file was acknowledged was taken")
            return
        }
        #expect(early.contains("before every file"))
    }

    @Test func theReceiverCannotAcknowledgeWhatWasNotSentOrTwice() {
        var m = SenderMachine(entries: [entryOf(1, 5)])
        _ = m.receive(.accept(Accept()))
        guard case .violation(let unknown) = m.receive(.fileAck(FileAck(fileID: 9, status: .committed, digest: digest))) else {
            Issue.record("an ack for an unknown file was taken")
            return
        }
        #expect(unknown.contains("unknown file id 9"))
        var n = SenderMachine(entries: [entryOf(1, 5)])
        _ = n.receive(.accept(Accept()))
        _ = n.receive(.fileAck(FileAck(fileID: 1, status: .committed, digest: digest)))
        guard case .violation(let twice) = n.receive(.fileAck(FileAck(fileID: 1, status: .committed, digest: digest))) else {
            Issue.record("a second ack was taken")
            return
        }
        #expect(twice.contains("twice"))
    }

    @Test func aCompletePushAndItsReport() {
        var m = SenderMachine(entries: [entryOf(1, 5)])
        _ = m.receive(.accept(Accept()))
        let report = HopReport(outcomes: [.init(host: "b:1", ok: true, files: 1, bytes: 5)])
        #expect(m.receive(.report(report)) == .hopReport(report))
        guard case .violation = m.receive(.report(report)) else { Issue.record("a second report was taken"); return }
        var n = SenderMachine(entries: [entryOf(1, 5)])
        _ = n.receive(.accept(Accept()))
        _ = n.receive(.fileAck(FileAck(fileID: 1, status: .committed, digest: digest)))
        n.endSent()
        #expect(n.receive(.done(Done(files: 1, bytes: 5))) == .complete(Done(files: 1, bytes: 5)))
        #expect(n.phase == .finished)
    }

    @Test func frameOutOfPlaceOrAnError() {
        var m = SenderMachine(entries: [])
        guard case .violation(let s) = m.receive(.done(Done(files: 0, bytes: 0))) else { Issue.record("done before accept"); return }
        #expect(s.contains("waiting for the receiver to accept"), "phases read as words, not state names: \(s)")
        var n = SenderMachine(entries: [])
        #expect(n.receive(.error(ErrorFrame(.noSpace, "full"))) == .peerFailed(ErrorFrame(.noSpace, "full")))
    }
}

@Suite struct WriteSchedulerTests {
    typealias S = WriteScheduler.Situation

    func plan(_ entries: [ManifestEntry]) -> SendPlan {
        SendPlan(entries: entries, chunkSize: 100, smallFiles: false)
    }

    @Test func controlFramesGoFirstAndStepsWaitForAFreeConnection() {
        var w = WriteScheduler(plan: plan([entryOf(1, 150)]))
        #expect(w.next(S(controlQueued: true)) == .flushControl)
        #expect(w.next(S(controlQueued: true, writeBusy: true)) == .wait, "nothing on a busy connection")
        #expect(w.next(S()) == .chunk(FileChunk(index: 0, offset: 0, length: 100), stream: nil))
        #expect(w.next(S(writeBusy: true)) == .wait)
        #expect(w.next(S()) == .chunk(FileChunk(index: 0, offset: 100, length: 50), stream: nil))
        #expect(w.next(S()) == .step(.fileEnd(index: 0)))
        #expect(w.next(S()) == .step(.end))
        #expect(w.next(S()) == .wait)
    }

    @Test func chunksPreferAFreeStreamAndWaitWhileStreamsConnect() {
        var w = WriteScheduler(plan: plan([entryOf(1, 300)]))
        #expect(w.next(S(streamsGone: false)) == .wait, "streams still connecting: the chunk waits for them")
        #expect(w.next(S(writeBusy: true, idleStream: 2, streamsGone: false)) == .chunk(FileChunk(index: 0, offset: 0, length: 100), stream: 2),
                "a free stream takes a chunk even while the push's connection is busy")
        w.resend([FileChunk(index: 0, offset: 0, length: 100)])
        #expect(w.next(S(idleStream: 0, streamsGone: false)) == .chunk(FileChunk(index: 0, offset: 0, length: 100), stream: 0),
                "a broken stream's chunk goes again first")
        w.resend([FileChunk(index: 0, offset: 0, length: 100)])
        w.forget(0)
        #expect(w.next(S(idleStream: 0, streamsGone: false)) == .chunk(FileChunk(index: 0, offset: 100, length: 100), stream: 0),
                "an acknowledged file's chunks are not sent again")
    }

    @Test func theLimitSpacesChunksOut() {
        var w = WriteScheduler(plan: plan([entryOf(1, 300)]), rateLimit: 1000)
        #expect(w.next(S(now: 0)) == .chunk(FileChunk(index: 0, offset: 0, length: 100), stream: nil))
        w.chunkOut(100)
        #expect(w.next(S(now: 0)) == .pace(nanoseconds: 100_000_000))
        #expect(w.next(S(now: 0)) == .wait, "one timer at a time")
        w.paceTimerFired()
        #expect(w.next(S(now: 100_000_000)) == .chunk(FileChunk(index: 0, offset: 100, length: 100), stream: nil))
    }

    @Test func aTrailerWhoseDigestIsNotReadyComesBack() {
        var w = WriteScheduler(plan: plan([entryOf(1, 0)]))
        #expect(w.next(S()) == .step(.fileEnd(index: 0)))
        w.putBack(.fileEnd(index: 0))
        #expect(w.next(S()) == .step(.fileEnd(index: 0)))
        #expect(w.next(S(sending: false)) == .wait, "the plan moves on only while sending")
    }
}
