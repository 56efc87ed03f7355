import Testing
import FTTransfer
import FTWire

/// The receiver's rules for a push, checked on the machine alone: every
/// case a hostile sender can get wrong, with the refusal it gets.
@Suite struct ReceiverMachineTests {
    let digest = Digest128(high: 1, low: 2)

    func named(_ path: String, id: UInt32 = 1, size: UInt64 = 5, kind: ManifestEntry.Kind = .file) -> ManifestEntry {
        ManifestEntry(fileID: id, kind: kind, path: Array(path.utf8), mode: 0o644, size: size, mtimeSeconds: 0, mtimeNanoseconds: 0)
    }

    /// The machine's answer to a whole manifest.
    func offer(_ entries: [ManifestEntry], count: UInt32? = nil, total: UInt64? = nil,
               allowSensitive: Bool = false) -> (ReceiverMachine, ReceiverMachine.Action) {
        var m = ReceiverMachine(allowSensitive: allowSensitive)
        #expect(m.receive(.manifest(entries)) == .none)
        let sum = entries.reduce(UInt64(0)) { $0 + ($1.kind == .file ? $1.size : 0) }
        let a = m.receive(.manifestEnd(ManifestEnd(entryCount: count ?? UInt32(entries.count), totalBytes: total ?? sum)))
        return (m, a)
    }

    /// A machine that accepted these entries.
    func receiving(_ entries: [ManifestEntry]) -> ReceiverMachine {
        var (m, a) = offer(entries)
        #expect(a == .review)
        m.accepted()
        return m
    }

    func refusal(_ a: ReceiverMachine.Action, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        guard case .fail(let e) = a else {
            Issue.record("not refused: \(a)", sourceLocation: sourceLocation)
            return ""
        }
        return e.message
    }

    @Test func manifestRules() {
        #expect(refusal(offer([named("../x")]).1).contains("refusing path '../x'"))
        #expect(refusal(offer([named(".ssh", kind: .directory), named(".ssh/authorized_keys", id: 2)]).1).contains("logins or start-up"))
        #expect(offer([named(".bashrc")], allowSensitive: true).1 == .review, "--allow-sensitive takes it")
        #expect(refusal(offer([named("dup", id: 1), named("dup", id: 2)]).1).contains("announced twice"))
        #expect(refusal(offer([named("a", id: 1), named("b", id: 1)]).1).contains("file id 1 announced twice"))
        #expect(refusal(offer([named("f", id: 1), named("f/g/h", id: 2)]).1).contains("needs 'f' to be a directory"))
        #expect(refusal(offer([named("a")], count: 5).1).contains("counts 5 entries"))
        #expect(refusal(offer([named("a")], total: 999).1).contains("add up to 5"))
        #expect(refusal(offer([named("a", id: 1, size: UInt64(Int64.max) + 1)], total: 0).1).contains("impossible size"))
        var small = ReceiverMachine(maxEntries: 2)
        #expect(refusal(small.receive(.manifest([named("a", id: 1), named("b", id: 2), named("c", id: 3)]))).contains("more than 2"))
    }

    @Test func framesOutOfPlace() {
        var m = ReceiverMachine()
        #expect(refusal(m.receive(.data(DataHeader(fileID: 1, length: 1, offset: 0)))).contains("unexpected data frame while waiting for the manifest"))
        var n = ReceiverMachine()
        #expect(refusal(n.receive(.hello(Hello(role: .sender)))).contains("unexpected hello"))
        var o = ReceiverMachine()
        #expect(refusal(o.receive(.accept(Accept()))).contains("unexpected accept"))
        var p = ReceiverMachine()
        #expect(p.receive(.error(ErrorFrame(.io, "disk"))) == .peerFailed(ErrorFrame(.io, "disk")))
    }

    @Test func chunkRules() {
        var m = receiving([named("m"), named("dir", id: 2, kind: .directory)])
        #expect(refusal(m.receive(.data(DataHeader(fileID: 1, length: 6, offset: 0)))).contains("past the 5 bytes"))
        m = receiving([named("m"), named("dir", id: 2, kind: .directory)])
        #expect(refusal(m.receive(.data(DataHeader(fileID: 1, length: 1, offset: 9)))).contains("past the"))
        m = receiving([named("m"), named("dir", id: 2, kind: .directory)])
        #expect(refusal(m.receive(.data(DataHeader(fileID: 77, length: 1, offset: 0)))).contains("unknown file id 77"))
        m = receiving([named("m"), named("dir", id: 2, kind: .directory)])
        #expect(refusal(m.receive(.data(DataHeader(fileID: 2, length: 1, offset: 0)))).contains("chunk for directory 'dir'"))
        m = receiving([named("m")])
        #expect(m.receive(.data(DataHeader(fileID: 1, length: 3, offset: 0))) == .store(index: 0, offset: 0, length: 3))
        #expect(refusal(m.receive(.data(DataHeader(fileID: 1, length: 2, offset: 2)))).contains("overlaps"))
    }

    @Test func trailerRules() {
        var m = receiving([named("m")])
        _ = m.receive(.data(DataHeader(fileID: 1, length: 3, offset: 0)))
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 5, digest: digest)))).contains("ended after 3 of 5 bytes"))
        m = receiving([named("m")])
        _ = m.receive(.data(DataHeader(fileID: 1, length: 5, offset: 0)))
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 5, digest: nil)))).contains("no digest"))
        m = receiving([named("m")])
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 6, digest: digest)))).contains("manifest said 5"))
        m = receiving([named("empty", size: 0)])
        #expect(m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: digest))) == .finish(index: 0))
        #expect(refusal(m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: digest)))).contains("second trailer"))
        m = receiving([named("m")])
        _ = m.receive(.data(DataHeader(fileID: 1, length: 5, offset: 0)))
        #expect(m.receive(.fileEnd(FileEnd(fileID: 1, size: 5, digest: digest))) == .finish(index: 0))
        #expect(refusal(m.receive(.data(DataHeader(fileID: 1, length: 0, offset: 5)))).contains("after its trailer"))
    }

    @Test func smallFilesRules() {
        var m = receiving([named("a"), named("d", id: 2, kind: .directory)])
        let five = SmallFiles.File(fileID: 1, digest: digest, bytes: [1, 2, 3, 4, 5])
        #expect(refusal(m.receive(.smallFiles(SmallFiles(files: [SmallFiles.File(fileID: 1, digest: digest, bytes: [1])]))))
                    .contains("arrived with 1 bytes"))
        m = receiving([named("a"), named("d", id: 2, kind: .directory)])
        #expect(refusal(m.receive(.smallFiles(SmallFiles(files: [SmallFiles.File(fileID: 2, digest: digest, bytes: [])])))).contains("not a file"))
        m = receiving([named("a")])
        #expect(refusal(m.receive(.smallFiles(SmallFiles(files: [SmallFiles.File(fileID: 1, digest: nil, bytes: [1, 2, 3, 4, 5])]))))
                    .contains("no digest"))
        m = receiving([named("a")])
        _ = m.receive(.data(DataHeader(fileID: 1, length: 2, offset: 0)))
        #expect(refusal(m.receive(.smallFiles(SmallFiles(files: [five])))).contains("whole after it had started"))
        m = receiving([named("a")])
        #expect(m.receive(.smallFiles(SmallFiles(files: [five]))) == .storeSmall([SmallArrival(index: 0, file: five)]))
    }

    @Test func theEndAndTheDone() {
        var m = receiving([named("a"), named("b", id: 2)])
        #expect(refusal(m.receive(.end)).contains("2 files never finished"))
        m = receiving([named("a", size: 0), named("d", id: 2, kind: .directory)])
        #expect(m.receive(.fileEnd(FileEnd(fileID: 1, size: 0, digest: digest))) == .finish(index: 0))
        #expect(m.receive(.end) == .none, "the commit is still running")
        #expect(m.finished(index: 0, bytes: 0) == .complete(Done(files: 1, bytes: 0)))
    }

    @Test func resumeTakesOnlyWhatWasOffered() {
        var (m, _) = offer([named("big", size: 100)])
        m.accepted(offering: [Accept.Have(fileID: 1, bytes: 40, digest: digest)])
        #expect(refusal(m.receive(.resume(Resume(skips: [Resume.Skip(fileID: 1, bytes: 50)])))).contains("was not offered"))
        var (n, _) = offer([named("big", size: 100)])
        n.accepted(offering: [Accept.Have(fileID: 1, bytes: 40, digest: digest)])
        #expect(n.receive(.resume(Resume(skips: [Resume.Skip(fileID: 1, bytes: 40)]))) == .resume(keep: [ResumedPrefix(index: 0, bytes: 40)], drop: []))
        #expect(refusal(n.receive(.data(DataHeader(fileID: 1, length: 10, offset: 30)))).contains("overlaps"), "the kept prefix counts as received")
        var (o, _) = offer([named("big", size: 100)])
        o.accepted(offering: [Accept.Have(fileID: 1, bytes: 40, digest: digest)])
        #expect(o.receive(.resume(Resume())) == .resume(keep: [], drop: [0]), "a prefix the sender does not skip is dropped")
    }

    @Test func aChainPushStartsWithItsRelay() {
        var m = ReceiverMachine()
        #expect(m.receive(.relay(Relay(hops: ["b:1"]))) == .relay(["b:1"]))
        #expect(m.chain)
        #expect(refusal(m.receive(.relay(Relay(hops: [])))).contains("unexpected relay"))
    }
}
