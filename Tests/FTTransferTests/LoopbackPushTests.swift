import Foundation
import Testing
import FTEngine
import FTTransfer
import FTWire

@Suite struct LoopbackPushTests {
    @Test(arguments: [0, 1, 4095, 4096, (1 << 20) + 1])
    func singleFileArrivesByteIdentical(size: Int) throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src") + "/f.bin"
        let bytes = patternBytes(size, seed: UInt64(size) + 7)
        writeFile(src, bytes)
        let (summary, outcome) = try push([src], to: tmp.sub("dst"))
        #expect(readFile(tmp.path + "/dst/f.bin") == bytes)
        #expect(summary.bytes == UInt64(size))
        #expect(summary.digests.count == 1)
        #expect(outcome?.succeeded == 1)
    }
}
