import Foundation
import Testing
import FTTestSupport
import FTEngine
@testable import FTTransfer
import FTWire

@Suite struct FileSinkTests {
    /// A chain host cut off mid-push settles its partial while a later pass
    /// of the same entry may already have created a new one under the same
    /// name: settling must never touch that newer file.
    @Test func settlingLeavesANewerFileUnderTheSameNameAlone() throws {
        let path = NSTemporaryDirectory() + "ft-sink-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dir = try Directory.open(path)
        let entry = ManifestEntry(fileID: 1, kind: .file, path: Array("data.bin".utf8), mode: 0o644, size: 10,
                                  mtimeSeconds: 1, mtimeNanoseconds: 0)
        let first = try FileSink(directory: dir, entry: entry, display: "data.bin", verify: true, resume: nil)
        first.discard(keep: false)
        #expect(!FileManager.default.fileExists(atPath: path + "/" + first.tempName), "the cut-off partial went at once")
        let second = try FileSink(directory: dir, entry: entry, display: "data.bin", verify: true, resume: nil)
        #expect(second.tempName == first.tempName)
        first.discard(keep: false)  // again, as the first session ends
        first.discard(keep: true)
        #expect(FileManager.default.fileExists(atPath: path + "/" + second.tempName), "the newer partial is still there")
    }
}
