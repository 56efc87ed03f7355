import Testing
import FTTestSupport
import FTTransfer
import FTWire

@Suite struct SendPlanTests {
    func file(_ id: UInt32, _ size: UInt64) -> ManifestEntry {
        ManifestEntry(fileID: id, kind: .file, path: Array("f\(id)".utf8), mode: 0o644, size: size, mtimeSeconds: 0, mtimeNanoseconds: 0)
    }

    func steps(_ plan: SendPlan) -> [SendPlan.Step] {
        var p = plan
        var out: [SendPlan.Step] = []
        while let s = p.next() { out.append(s) }
        return out
    }

    @Test func stdinFirstThenBigFilesLargestFirstThenSmallBatches() {
        let entries = [
            file(0, 10), file(1, 3 << 20), ManifestEntry(fileID: 2, kind: .directory, path: Array("d".utf8), mode: 0o755, size: 0, mtimeSeconds: 0, mtimeNanoseconds: 0),
            file(3, 5 << 20), ManifestEntry(fileID: 4, kind: .stdin, path: Array("s".utf8), mode: 0o644, size: ManifestEntry.unknownSize, mtimeSeconds: 0, mtimeNanoseconds: 0),
            file(5, 0),
        ]
        let s = steps(SendPlan(entries: entries, chunkSize: 4 << 20))
        #expect(s == [
            .stdin(index: 4), .fileEnd(index: 4),
            .chunk(index: 3, offset: 0, length: 4 << 20), .chunk(index: 3, offset: 4 << 20, length: 1 << 20), .fileEnd(index: 3),
            .chunk(index: 1, offset: 0, length: 3 << 20), .fileEnd(index: 1),
            .small([0, 5]),
            .end,
        ])
        // The sender's hash-ahead helper reads what goes out in chunks, in
        // the same order: not the stream, not the small files.
        #expect(SendPlan(entries: entries, chunkSize: 4 << 20).chunkedFiles == [3, 1])
        // A small file with a held prefix to resume goes in chunks too.
        #expect(SendPlan(entries: entries, chunkSize: 4 << 20, skip: [0: 4]).chunkedFiles == [3, 1, 0])
    }

    @Test func smallBatchesStayUnderTheBatchSize() {
        let entries = (0..<600).map { file(UInt32($0), 4096) }
        let batches = steps(SendPlan(entries: entries, chunkSize: 1 << 20)).compactMap { step -> [Int]? in
            if case .small(let b) = step { return b }
            return nil
        }
        #expect(batches.flatMap { $0 } == Array(0..<600))
        for b in batches {
            let bytes = 4 + b.count * (SmallFiles.File.headerSize + 4096)
            #expect(bytes <= SmallFiles.batchBytes)
        }
        #expect(batches.count == 3)
    }

    @Test func aResumedSmallFileGoesAsChunksFromItsOffset() {
        let s = steps(SendPlan(entries: [file(7, 5000)], chunkSize: 1 << 20, skip: [7: 4096]))
        #expect(s == [.chunk(index: 0, offset: 4096, length: 904), .fileEnd(index: 0), .end])
    }
}
