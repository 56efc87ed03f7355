import Testing
import FTTestSupport
import FTTransfer
import FTWire

/// The receiver's rules for `-P N`, with no I/O: chunks out of order and
/// on other connections, trailers that wait for them, chunks sent again.
@Suite struct ParallelStreamsMachineTests {
    static let mib: UInt64 = 1 << 20
    let digest = Digest128(high: 1, low: 2)

    /// A machine receiving one 3 MiB file (id 7) and stdin (id 8).
    func receiving(parallel: Bool = true) -> ReceiverMachine {
        var m = opened(parallel: parallel)
        accept(&m, 1, [
            ManifestEntry(fileID: 7, kind: .file, path: Array("big".utf8), mode: 0o644, size: 3 * Self.mib, mtimeSeconds: 0, mtimeNanoseconds: 0),
            ManifestEntry(fileID: 8, kind: .stdin, path: Array("in".utf8), mode: 0o644, size: ManifestEntry.unknownSize, mtimeSeconds: 0, mtimeNanoseconds: 0),
        ])
        return m
    }

    func chunk(_ n: UInt64) -> DataHeader { DataHeader(fileID: 7, length: UInt32(Self.mib), offset: n * Self.mib) }

    @Test func aTrailerWaitsForChunksStillOnOtherStreams() {
        var m = receiving()
        #expect(m.takesDataStreams)
        #expect(m.dataStreamChunk(chunk(2)) == .store(id: 7, offset: 2 * Self.mib, length: UInt32(Self.mib)))
        #expect(m.receive(.data(chunk(0))) == .store(id: 7, offset: 0, length: UInt32(Self.mib)))
        #expect(m.chunkStored(id: 7) == .none)
        // The trailer comes before chunk 1 (on a data stream) and chunk 2 is still being written.
        #expect(m.receive(.fileEnd(FileEnd(fileID: 7, size: 3 * Self.mib, digest: digest))) == .none)
        #expect(m.dataStreamChunk(chunk(1)) == .store(id: 7, offset: Self.mib, length: UInt32(Self.mib)))
        #expect(m.chunkStored(id: 7) == .none, "chunk 2 is still on its way to the file")
        #expect(m.chunkStored(id: 7) == .finish(id: 7))
    }

    @Test func aChunkLostWithItsStreamIsTakenAgainAndAWholeOneIsDropped() {
        var m = receiving()
        #expect(m.dataStreamChunk(chunk(0)) == .store(id: 7, offset: 0, length: UInt32(Self.mib)))
        #expect(m.dataStreamChunk(chunk(1)) == .store(id: 7, offset: Self.mib, length: UInt32(Self.mib)))
        #expect(m.chunkStored(id: 7) == .none)
        // Chunk 1's stream broke mid-payload: it comes again on another.
        m.chunkLost(id: 7, range: Self.mib..<2 * Self.mib)
        #expect(m.dataStreamChunk(chunk(1)) == .store(id: 7, offset: Self.mib, length: UInt32(Self.mib)))
        // Chunk 0 was whole before its stream broke; the sender sends it again anyway.
        #expect(m.dataStreamChunk(chunk(0)) == .discard(length: UInt32(Self.mib)))
        // Half a chunk over received bytes is no resend: refused.
        let skew = DataHeader(fileID: 7, length: UInt32(Self.mib), offset: Self.mib + Self.mib / 2)
        if case .fail(let e) = m.dataStreamChunk(skew) {
            #expect(e.message.contains("overlaps"))
        } else {
            Issue.record("a skewed chunk was accepted")
        }
    }

    @Test func aStreamsBytesStayOnThePushConnection() {
        var m = receiving()
        if case .fail(let e) = m.dataStreamChunk(DataHeader(fileID: 8, length: 10, offset: 0)) {
            #expect(e.message.contains("stdin"))
        } else {
            Issue.record("stdin bytes on a data stream were accepted")
        }
    }

    @Test func withoutStreamsTheOldRulesHold() {
        var m = receiving(parallel: false)
        #expect(!m.takesDataStreams)
        if case .fail = m.dataStreamChunk(chunk(0)) {} else { Issue.record("data-stream chunk accepted without -P") }
        var n = receiving(parallel: false)
        #expect(n.receive(.data(chunk(0))) == .store(id: 7, offset: 0, length: UInt32(Self.mib)))
        // An early trailer is a violation when everything is on one stream.
        if case .fail(let e) = n.receive(.fileEnd(FileEnd(fileID: 7, size: 3 * Self.mib, digest: digest))) {
            #expect(e.message.contains("ended after"))
        } else {
            Issue.record("early trailer accepted")
        }
    }
}

@Suite struct ReceivedRangesEditTests {
    @Test func containsUnionAndRemove() {
        var r = ReceivedRanges()
        r.formUnion(10..<20)
        r.formUnion(30..<40)
        #expect(r.contains(12..<20) && !r.contains(15..<25) && r.contains(0..<0))
        r.formUnion(15..<32)
        #expect(r.ranges == [10..<40])
        r.formUnion(40..<41)
        #expect(r.ranges == [10..<41], "touching ranges merge")
        r.remove(20..<30)
        #expect(r.ranges == [10..<20, 30..<41])
        r.remove(0..<12)
        r.remove(40..<100)
        #expect(r.ranges == [12..<20, 30..<40])
        #expect(r.total == 18)
    }
}
