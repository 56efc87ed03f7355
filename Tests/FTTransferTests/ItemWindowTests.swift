import Testing
import FTWire
@testable import FTTransfer

@Suite struct ItemWindowTests {
    private func batch(_ id: UInt32, ids: ClosedRange<UInt32>) -> TreeScanner.ScanBatch {
        TreeScanner.ScanBatch(id: id, items: ids.map { fileID in
            SourceItem(entry: ManifestEntry(fileID: fileID, kind: .file, path: Array("f\(fileID)".utf8), mode: 0o644, size: UInt64(fileID),
                                            mtimeSeconds: 0, mtimeNanoseconds: 0), origin: .none)
        })
    }

    /// Every id of every batch in flight is found, and its own entry;
    /// ids around and between them are not; a batch let go is gone, whole,
    /// and the others stay.
    @Test func findsEachIdInItsBatchUntilThatBatchIsLetGo() {
        var window = ItemWindow()
        window.add(batch(1, ids: 1...128))
        window.add(batch(2, ids: 129...1152))
        window.add(batch(3, ids: 1153...1153))
        for id in UInt32(1)...1153 {
            #expect(window[id]?.entry.path == Array("f\(id)".utf8), "id \(id)")
        }
        for id: UInt32 in [0, 1154, .max] { #expect(window[id] == nil, "id \(id)") }
        #expect(window.items(of: 2).map(\.entry.fileID) == Array(129...1152))
        window.remove(batch: 2)
        #expect(window[129] == nil && window[1152] == nil && window.items(of: 2).isEmpty)
        #expect(window[128]?.entry.fileID == 128 && window[1153]?.entry.fileID == 1153)
        window.remove(batch: 1)
        window.remove(batch: 3)
        #expect(window.isEmpty)
    }
}
