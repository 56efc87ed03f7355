import Testing
import FTTransfer
import FTWire

/// Entries for machine tests.
func named(_ path: String, id: UInt32, size: UInt64 = 5, kind: ManifestEntry.Kind = .file,
           flags: ManifestEntry.Flags = []) -> ManifestEntry {
    ManifestEntry(fileID: id, kind: kind, path: Array(path.utf8), mode: 0o644, size: size, mtimeSeconds: 0, mtimeNanoseconds: 0,
                  flags: flags)
}

/// A machine past its push-info.
func opened(parallel: Bool = false, flags: PushInfo.Flags = [], allowSensitive: Bool = false) -> ReceiverMachine {
    var m = ReceiverMachine(allowSensitive: allowSensitive, parallel: parallel)
    _ = m.receive(.pushInfo(PushInfo(flags: flags)))
    return m
}

/// Announces a batch, reviews it with no offers; the actions of that.
@discardableResult
func accept(_ m: inout ReceiverMachine, _ batchID: UInt32, _ entries: [ManifestEntry],
            offers: [UInt32: BatchAnswer.Offer] = [:]) -> [ReceiverMachine.Action] {
    let a = m.receive(.batch(Batch(batchID: batchID, entries: entries)))
    guard a == .review(batchID: batchID) else { return [a] }
    return m.answered(batchID, offers: offers)
}

func refusal(_ a: ReceiverMachine.Action, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    guard case .fail(let e) = a else {
        Issue.record("not refused: \(a)", sourceLocation: sourceLocation)
        return ""
    }
    return e.message
}

/// The receiver's rules for a push, checked on the machine alone: every
/// case a hostile sender can get wrong, with the refusal it gets.
@Suite struct ReceiverMachineTests {
    let digest = Digest128(high: 1, low: 2)

    func announce(_ entries: [ManifestEntry], into m: inout ReceiverMachine, batch: UInt32 = 1) -> ReceiverMachine.Action {
        m.receive(.batch(Batch(batchID: batch, entries: entries)))
    }

    @Test func entryRules() {
        var m = opened()
        #expect(refusal(announce([named("../x", id: 1)], into: &m)).contains("refusing path '../x'"))
        m = opened()
        #expect(refusal(announce([named(".ssh", id: 1, kind: .directory), named(".ssh/authorized_keys", id: 2)], into: &m)).contains("logins or start-up"))
        m = opened(allowSensitive: true)
        #expect(announce([named(".bashrc", id: 1)], into: &m) == .review(batchID: 1), "--allow-sensitive takes it")
        m = opened()
        #expect(refusal(announce([named("dup", id: 1), named("dup", id: 2)], into: &m)).contains("announced twice"))
        m = opened()
        #expect(refusal(announce([named("a", id: 2), named("b", id: 2)], into: &m)).contains("file id 2 is not above"))
        m = opened()
        #expect(refusal(announce([named("b", id: 1), named("a", id: 2)], into: &m)).contains("out of order"))
        m = opened()
        #expect(refusal(announce([named("f", id: 1), named("f/g/h", id: 2)], into: &m)).contains("needs 'f' to be a directory"))
        m = opened()
        #expect(refusal(announce([named("a", id: 1, size: UInt64(Int64.max) + 1)], into: &m)).contains("impossible size"))
        m = opened()
        #expect(refusal(announce([], into: &m)).contains("empty"))
    }

    @Test func rulesHoldAcrossBatches() {
        // An entry repeated in a later batch, an entry under an earlier
        // batch's file, batch ids out of order, batches after the end.
        var m = opened()
        accept(&m, 1, [named("d", id: 1, kind: .directory), named("d/x", id: 2)])
        #expect(refusal(announce([named("d/x", id: 3)], into: &m, batch: 2)).contains("announced twice"))
        m = opened()
        accept(&m, 1, [named("f", id: 1)])
        #expect(refusal(announce([named("f/inside", id: 2)], into: &m, batch: 2)).contains("needs 'f' to be a directory"))
        m = opened()
        accept(&m, 1, [named("a", id: 1)])
        #expect(refusal(announce([named("b", id: 2)], into: &m, batch: 3)).contains("batch 3 where batch 2 was due"))
        m = opened()
        accept(&m, 1, [named("a", id: 1)])
        #expect(refusal(announce([named("b", id: 1)], into: &m, batch: 2)).contains("file id 1 is not above"))
        m = opened()
        accept(&m, 1, [named("e", id: 1, size: 0)])
        _ = m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: digest)))
        _ = m.settled(1, .committed)
        #expect(m.receive(.end) == .complete(Done(files: 1, bytes: 0)))
        var n = opened()
        accept(&n, 1, [named("e", id: 1)])
        _ = n.receive(.end)
        #expect(refusal(n.receive(.batch(Batch(batchID: 2, entries: [named("z", id: 2)])))).contains("after the end"))
    }

    @Test func aHostileSenderCannotHoldUnboundedBatches() {
        var m = opened()
        for b in 1...UInt32(ReceiverMachine.maxActiveBatches) {
            accept(&m, b, [named("f\(String(format: "%03d", b))", id: b)])
        }
        #expect(m.activeBatches == ReceiverMachine.maxActiveBatches)
        #expect(refusal(m.receive(.batch(Batch(batchID: 17, entries: [named("z", id: 99)])))).contains("more than 16 batches"))
    }

    @Test func linksAndTheirRules() {
        var link = named("d/l", id: 2, size: 0, kind: .symlink)
        link.linkTarget = Array("../x".utf8)
        var m = opened()
        #expect(refusal(announce([named("d", id: 1, kind: .directory), link, named("d/l/beneath", id: 3)], into: &m))
                    .contains("needs 'd/l' to be a directory, but it is announced as a symlink"))
        var bad = link
        bad.linkTarget = Array("a\u{1B}[2J".utf8)
        m = opened()
        #expect(refusal(announce([named("d", id: 1, kind: .directory), bad], into: &m)).contains("its target"))
        var hard = named("h", id: 2, size: 0, kind: .hardlink)
        hard.linkTo = 1
        m = opened()
        #expect(refusal(announce([named("a", id: 1), hard], into: &m)).contains("not a file this push announced as a link source"))
        m = opened()
        #expect(refusal(announce([named("a", id: 1, kind: .directory), hard], into: &m)).contains("not a file"))
        hard.linkTo = 77
        m = opened()
        #expect(refusal(announce([named("a", id: 1, flags: .linkSource), hard], into: &m)).contains("entry 77"))
    }

    @Test func aHardLinkWaitsForItsSourcesCommit() {
        var hard = named("b", id: 2, size: 0, kind: .hardlink)
        hard.linkTo = 1
        var m = opened()
        #expect(accept(&m, 1, [named("a", id: 1, size: 0, flags: .linkSource), hard]).isEmpty)
        #expect(m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: digest))) == .finish(id: 1))
        let after = m.settled(1, .committed)
        #expect(after == [.link(id: 2, sourcePath: try! PeerPath.validate(Array("a".utf8)))])
        let acked = m.settled(2, .committed)
        guard case .acknowledge(let ack)? = acked.first else { Issue.record("no acknowledgement"); return }
        #expect(ack.results.map(\.fileID) == [1, 2])
        // In a later batch, a link to a committed source is made at once.
        var later = named("c", id: 3, size: 0, kind: .hardlink)
        later.linkTo = 1
        #expect(accept(&m, 2, [later]) == [.link(id: 3, sourcePath: try! PeerPath.validate(Array("a".utf8)))])
    }

    @Test func chunkRules() {
        func receiving() -> ReceiverMachine {
            var m = opened()
            accept(&m, 1, [named("dir", id: 1, kind: .directory), named("m", id: 2)])
            return m
        }
        var m = receiving()
        #expect(refusal(m.receive(.data(DataHeader(fileID: 2, length: 6, offset: 0)))).contains("past the 5 bytes"))
        m = receiving()
        #expect(refusal(m.receive(.data(DataHeader(fileID: 77, length: 1, offset: 0)))).contains("unknown file id 77"))
        m = receiving()
        #expect(refusal(m.receive(.data(DataHeader(fileID: 1, length: 1, offset: 0)))).contains("not a file"))
        m = receiving()
        #expect(m.receive(.data(DataHeader(fileID: 2, length: 3, offset: 0))) == .store(id: 2, offset: 0, length: 3))
        #expect(refusal(m.receive(.data(DataHeader(fileID: 2, length: 2, offset: 2)))).contains("overlaps"))
        var early = opened()
        _ = early.receive(.batch(Batch(batchID: 1, entries: [named("m", id: 1)])))
        #expect(refusal(early.receive(.data(DataHeader(fileID: 1, length: 1, offset: 0)))).contains("before its batch was answered"))
    }

    @Test func holesOnlyInSparseFiles() {
        var m = opened()
        accept(&m, 1, [named("plain", id: 1, size: 100), named("sparse", id: 2, size: 1 << 20, flags: .sparse)])
        #expect(refusal(m.receive(.hole(Hole(fileID: 1, offset: 0, length: 10)))).contains("not a sparse file"))
        m = opened()
        accept(&m, 1, [named("sparse", id: 2, size: 1 << 20, flags: .sparse)])
        #expect(m.receive(.hole(Hole(fileID: 2, offset: 4096, length: 8192))) == .hole(id: 2, range: 4096..<12288))
        #expect(refusal(m.receive(.hole(Hole(fileID: 2, offset: 8192, length: 8192)))).contains("overlaps"), "overlapping extents")
        #expect(refusal(opened().receiveAfter([named("sparse", id: 2, size: 100, flags: .sparse)], .hole(Hole(fileID: 2, offset: 50, length: 51))))
                    .contains("past the 100 bytes"))
        var s = opened()
        accept(&s, 1, [named("sparse", id: 2, size: 8192, flags: .sparse)])
        _ = s.receive(.data(DataHeader(fileID: 2, length: 4096, offset: 0)))
        _ = s.receive(.hole(Hole(fileID: 2, offset: 4096, length: 4096)))
        #expect(s.receive(.fileEnd(FileEnd(fileID: 2, size: 8192, digest: digest))) == .finish(id: 2), "extents and holes cover the file")
    }

    @Test func trailerRules() {
        func receiving(_ size: UInt64 = 5) -> ReceiverMachine {
            var m = opened()
            accept(&m, 1, [named("m", id: 1, size: size)])
            return m
        }
        var m = receiving()
        _ = m.receive(.data(DataHeader(fileID: 1, length: 3, offset: 0)))
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 5, digest: digest)))).contains("ended after 3 of 5 bytes"))
        m = receiving()
        _ = m.receive(.data(DataHeader(fileID: 1, length: 5, offset: 0)))
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 5, digest: nil)))).contains("no digest"))
        m = receiving()
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 6, digest: digest)))).contains("manifest said 5"))
        m = receiving(0)
        #expect(m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: digest))) == .finish(id: 1))
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: digest)))).contains("second trailer"))
        m = receiving()
        #expect(m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: nil, unreadable: true))) == .finish(id: 1),
                "the sender could not read it after all")
    }

    @Test func smallFilesRules() {
        let five = SmallFiles.File(fileID: 1, digest: digest, bytes: [1, 2, 3, 4, 5])
        var m = opened()
        accept(&m, 1, [named("a", id: 1)])
        #expect(refusal(m.receive(.smallFiles(SmallFiles(files: [SmallFiles.File(fileID: 1, digest: digest, bytes: [1])])))).contains("arrived with 1 bytes"))
        m = opened()
        accept(&m, 1, [named("a", id: 1)])
        #expect(refusal(m.receive(.smallFiles(SmallFiles(files: [SmallFiles.File(fileID: 1, digest: nil, bytes: [1, 2, 3, 4, 5])])))).contains("no digest"))
        m = opened()
        accept(&m, 1, [named("a", id: 1)])
        _ = m.receive(.data(DataHeader(fileID: 1, length: 2, offset: 0)))
        #expect(refusal(m.receive(.smallFiles(SmallFiles(files: [five])))).contains("whole after it had started"))
        m = opened()
        accept(&m, 1, [named("a", id: 1)])
        #expect(m.receive(.smallFiles(SmallFiles(files: [five]))) == .storeSmall([SmallArrival(id: 1, file: five)]))
    }

    @Test func aBatchIsAcknowledgedWhenEveryEntryIsSettled() {
        var m = opened()
        let acts = accept(&m, 1, [named("d", id: 1, kind: .directory), named("d/a", id: 2, size: 0), named("d/b", id: 3, size: 0)])
        #expect(acts.isEmpty)
        #expect(m.settled(1, .committed).isEmpty)
        _ = m.receive(.fileEnd(FileEnd(fileID: 2, size: 0, digest: digest)))
        #expect(m.settled(2, .committed, digest: digest).isEmpty)
        _ = m.receive(.end)
        _ = m.receive(.fileEnd(FileEnd(fileID: 3, size: 0, digest: digest)))
        let last = m.settled(3, .committed, digest: digest)
        #expect(last.count == 2)
        guard case .acknowledge(let ack) = last[0], case .complete(let done) = last[1] else { Issue.record("\(last)"); return }
        #expect(ack.batchID == 1 && ack.results.count == 3)
        #expect(done.files == 2)
        #expect(m.entry(2) == nil, "a settled batch is forgotten")
    }

    @Test func resumeTakesOnlyWhatWasOffered() {
        let offer = BatchAnswer.Offer.prefix(bytes: 40, digest: digest)
        var m = opened()
        accept(&m, 1, [named("big", id: 1, size: 100)], offers: [1: offer])
        var n = m
        var early = m
        #expect(refusal(early.receive(.data(DataHeader(fileID: 1, length: 10, offset: 0)))).contains("before its batch was answered and planned"))
        #expect(refusal(m.receive(.plan(BatchPlan(batchID: 1, items: [BatchPlan.Item(fileID: 1, decision: .resumeAfter(50))])))).contains("does not fit"))
        #expect(n.receive(.plan(BatchPlan(batchID: 1, items: [BatchPlan.Item(fileID: 1, decision: .resumeAfter(40))])))
                == .plan(batchID: 1, [BatchPlan.Item(fileID: 1, decision: .resumeAfter(40))]))
        #expect(refusal(n.receive(.data(DataHeader(fileID: 1, length: 10, offset: 30)))).contains("overlaps"), "the kept prefix counts as received")
        var o = opened()
        accept(&o, 1, [named("big", id: 1, size: 100)], offers: [1: offer])
        #expect(refusal(o.receive(.plan(BatchPlan(batchID: 1, items: [BatchPlan.Item(fileID: 9, decision: .whole)])))).contains("did not offer"))
        var p = opened()
        accept(&p, 1, [named("big", id: 1, size: 100)])
        #expect(refusal(p.receive(.plan(BatchPlan(batchID: 1, items: [])))).contains("not waiting for one"))
    }

    @Test func framesOutOfPlace() {
        var m = ReceiverMachine()
        #expect(refusal(m.receive(.batch(Batch(batchID: 1, entries: [named("a", id: 1)])))).contains("waiting for the push's first frame"))
        var n = opened()
        #expect(refusal(n.receive(.hello(Hello(role: .sender)))).contains("unexpected hello"))
        var o = opened()
        #expect(refusal(o.receive(.answer(BatchAnswer(batchID: 1)))).contains("unexpected answer"))
        var p = opened()
        #expect(p.receive(.error(ErrorFrame(.io, "disk"))) == .peerFailed(ErrorFrame(.io, "disk")))
    }

    @Test func aChainPushStartsWithItsRelay() {
        var m = ReceiverMachine()
        #expect(m.receive(.relay(Relay(hops: ["b:1"]))) == .relay(["b:1"]))
        #expect(m.chain)
        #expect(refusal(m.receive(.relay(Relay(hops: [])))).contains("unexpected relay"))
    }
}

extension ReceiverMachine {
    /// Accepts `entries` as batch 1, then feeds `frame`.
    func receiveAfter(_ entries: [ManifestEntry], _ frame: Frame) -> Action {
        var m = self
        accept(&m, 1, entries)
        return m.receive(frame)
    }
}
