import Foundation
import Testing
import FTTestSupport
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
        expectSame(readFile(tmp.path + "/dst/f.bin"), bytes)
        #expect(summary.bytes == UInt64(size))
        #expect(summary.digests.count == 1)
        #expect(outcome?.succeeded == 1)
    }
}

struct PathCase: CustomTestStringConvertible, Sendable {
    var send: SendPath
    var receive: ReceivePath
    var engine: EnginePreference
    var testDescription: String { "\(send.rawValue)→\(receive.rawValue) on \(engine.rawValue)" }
}

let allPaths: [PathCase] = [SendPath.sendfile, .splice, .copy, .zc].flatMap { s in
    [ReceivePath.splice, .copy].flatMap { r in
        [EnginePreference.ioUring, .poll].map { PathCase(send: s, receive: r, engine: $0) }
    }
}

@Suite struct DataPathTests {
    @Test(arguments: allPaths)
    func everyPathCarriesOddSizesIntact(c: PathCase) throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src")
        let sizes = [0, 1, 4095, 4096, 65_537, (1 << 20) + 1, 3 * (1 << 20) + 5]
        for s in sizes { writeFile("\(src)/f\(s)", patternBytes(s, seed: UInt64(s) &+ 3)) }
        // Small files would travel whole in small-files frames, past the
        // path under test: every size goes in chunks here.
        let (summary, outcome) = try push([src], to: tmp.sub("dst"), path: c.send, receive: c.receive,
                                          engine: c.engine, chunk: 1 << 20, batchSmallFiles: false)
        for s in sizes {
            #expect(readFile("\(tmp.path)/dst/src/f\(s)") == patternBytes(s, seed: UInt64(s) &+ 3), "size \(s)")
        }
        #expect(summary.digests.count == sizes.count)
        #expect(summary.engine.backend == (c.engine == .poll ? .poll : .ioUring))
        // The path really carried the bytes: its operations moved them all.
        let payload = UInt64(sizes.reduce(0, +))
        let carried = summary.engine.operations.first { $0.kind == c.send.carryingOp }?.bytes ?? 0
        #expect(carried >= payload, "\(c.send.carryingOp) moved \(carried) of \(payload) payload bytes")
        #expect(outcome?.succeeded == 1)
    }

    @Test func largeFileOverSixtyFourMiB() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let size = (64 << 20) + 3
        let bytes = patternBytes(size, seed: 64)
        writeFile(tmp.sub("src") + "/big", bytes)
        let (summary, _) = try push([tmp.path + "/src/big"], to: tmp.sub("dst"))
        expectSame(readFile(tmp.path + "/dst/big"), bytes)
        #expect(summary.bytes == UInt64(size))
    }
}

extension SendPath {
    /// The operation that moves payload bytes on this path.
    var carryingOp: OpKind {
        switch self {
        case .sendfile: return .sendfile
        case .splice: return .splice
        // auto, verified: copy. Its reads may run on the loop thread
        // (InlineReads); its sends of the chunk are always ring operations.
        case .copy, .auto: return .send
        case .zc: return .sendZC
        }
    }
}
