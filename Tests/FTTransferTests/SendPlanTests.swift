import Testing
import FTTestSupport
import FTTransfer
import FTWire

@Suite struct SendPlanTests {
    func steps(_ plan: SendPlan) -> [SendPlan.Step] {
        var p = plan
        var out: [SendPlan.Step] = []
        while let s = p.next() { out.append(s) }
        return out
    }

    func file(_ id: UInt32, _ size: UInt64) -> FileSend { FileSend(id: id, kind: .file, size: size) }

    @Test func stdinFirstThenBigFilesLargestFirstThenSmallBatches() {
        let files = [file(1, 10), file(2, 3 << 20), file(4, 5 << 20), FileSend(id: 5, kind: .stdin, size: 0), file(6, 0)]
        let plan = SendPlan(files: files, chunkSize: 4 << 20)
        #expect(steps(plan) == [
            .stdin(id: 5), .fileEnd(id: 5),
            .chunk(id: 4, offset: 0, length: 4 << 20), .chunk(id: 4, offset: 4 << 20, length: 1 << 20), .fileEnd(id: 4),
            .chunk(id: 2, offset: 0, length: 3 << 20), .fileEnd(id: 2),
            .small([1, 6]),
        ])
        // The sender's hash-ahead helper reads what goes out in chunks, in
        // the same order: not stdin, not the small files.
        #expect(plan.chunkedFiles == [4, 2])
    }

    @Test func smallBatchesStayUnderTheBatchSize() {
        let batches = steps(SendPlan(files: (0..<600).map { file(UInt32($0), 4096) }, chunkSize: 1 << 20)).compactMap { step -> [UInt32]? in
            if case .small(let b) = step { return b }
            return nil
        }
        #expect(batches.flatMap { $0 } == Array(0..<600).map(UInt32.init))
        for b in batches {
            #expect(4 + b.count * (SmallFiles.File.headerSize + 4096) <= SmallFiles.batchBytes)
        }
        #expect(batches.count == 3)
    }

    @Test func aResumedSmallFileGoesAsChunksFromItsOffset() {
        let resumed = FileSend(id: 7, kind: .file, size: 5000, data: [4096..<5000])
        #expect(steps(SendPlan(files: [resumed], chunkSize: 1 << 20)) == [.chunk(id: 7, offset: 4096, length: 904), .fileEnd(id: 7)])
    }

    @Test func aSparseFileSendsItsExtentsAndNamesItsHoles() {
        let mib: UInt64 = 1 << 20
        let tail: Range<UInt64> = 9 * mib..<(9 * mib + 3 * mib / 2)
        let sparse = FileSend(id: 3, kind: .file, size: 11 * mib, data: [0..<4096, tail], holes: [4096..<9 * mib])
        let expected: [SendPlan.Step] = [
            .chunk(id: 3, offset: 0, length: 4096),
            .hole(id: 3, offset: 4096, length: 9 * mib - 4096),
            .chunk(id: 3, offset: 9 * mib, length: UInt32(mib)),
            .chunk(id: 3, offset: 10 * mib, length: UInt32(mib / 2)),
            .fileEnd(id: 3),
        ]
        #expect(steps(SendPlan(files: [sparse], chunkSize: UInt32(mib))) == expected)
    }

    @Test func aPatchSendsOnlyItsChangedChunksAndEntriesWithoutBytesSendNothing() {
        let patched = FileSend(id: 9, kind: .file, size: 3 << 20, data: [(1 << 20)..<(2 << 20)])
        let links = [FileSend(id: 10, kind: .symlink, size: 0), FileSend(id: 11, kind: .directory, size: 0)]
        #expect(steps(SendPlan(files: [patched] + links, chunkSize: 4 << 20)) == [.chunk(id: 9, offset: 1 << 20, length: 1 << 20), .fileEnd(id: 9)])
    }
}
