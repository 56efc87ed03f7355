import Testing
@testable import FTWire

/// One of every frame, with fields away from zero so byte-order slips show.
let sampleFrames: [Frame] = {
    var link = ManifestEntry(fileID: 4, kind: .symlink, path: Array("a/l".utf8), mode: 0o777, size: 0,
                             mtimeSeconds: 7, mtimeNanoseconds: 8, flags: [.owner])
    link.linkTarget = Array("../中文 文件.txt".utf8)
    link.uid = 1000
    link.gid = 0xFFFF_FFFE
    var hard = ManifestEntry(fileID: 5, kind: .hardlink, path: Array("a/h".utf8), mode: 0o644, size: 0,
                             mtimeSeconds: 9, mtimeNanoseconds: 10, flags: [.xattrs])
    hard.linkTo = 2
    hard.xattrs = [ManifestEntry.XAttr(name: Array("user.tag".utf8), value: [0, 1, 2]), ManifestEntry.XAttr(name: [0x75], value: [])]
    return [
        .hello(Hello(role: .sender, features: [.xxh3], sessionID: Array(0..<16), nonce: Array(100..<132),
                     proof: [1, 2, 3], agent: "ft/test")),
        .pushInfo(PushInfo(flags: [.noVerify, .sync, .checksum, .delete, .dryRun, .owner], entries: 3, bytes: 5 << 30)),
        .pushInfo(PushInfo()),
        .batch(Batch(batchID: 7, entries: [
            ManifestEntry(fileID: 1, kind: .directory, path: Array("a".utf8), mode: 0o755, size: 0,
                          mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 5),
            ManifestEntry(fileID: 2, kind: .file, path: Array("a/中文 文件.txt".utf8), mode: 0o644,
                          size: 5 << 30, mtimeSeconds: -1, mtimeNanoseconds: 999_999_999, flags: [.sparse, .linkSource]),
            ManifestEntry(fileID: 3, kind: .stdin, path: Array("stdin.tar".utf8), mode: 0o600,
                          size: ManifestEntry.unknownSize, mtimeSeconds: 0, mtimeNanoseconds: 0),
            link, hard,
        ])),
        .totals(Totals(entries: 1_000_000, bytes: 1 << 40)),
        .answer(BatchAnswer(batchID: 7, last: false, items: [
            BatchAnswer.Item(fileID: 2, offer: .prefix(bytes: 1 << 33, digest: Digest128(high: 9, low: 10))),
            BatchAnswer.Item(fileID: 3, offer: .identical),
        ])),
        .answer(BatchAnswer(batchID: 7, items: [
            BatchAnswer.Item(fileID: 4, offer: .digest(Digest128(high: 11, low: 12))),
            BatchAnswer.Item(fileID: 5, offer: .chunks(chunkSize: 1 << 20, digests: [Digest128(high: 1, low: 1), Digest128(high: 2, low: 2)])),
        ])),
        .answer(BatchAnswer(batchID: 8)),
        .plan(BatchPlan(batchID: 7, items: [
            BatchPlan.Item(fileID: 2, decision: .resumeAfter(1 << 33)),
            BatchPlan.Item(fileID: 3, decision: .whole),
            BatchPlan.Item(fileID: 4, decision: .skip),
            BatchPlan.Item(fileID: 5, decision: .patch(reuse: [true, false, true, true, false, false, true, false, true])),
            BatchPlan.Item(fileID: 6, decision: .patch(reuse: [])),
        ])),
        .data(DataHeader(fileID: 0xDEAD_BEEF, length: 1 << 20, offset: 0x1_0000_0001)),
        .hole(Hole(fileID: 2, offset: 1 << 32, length: 5 << 30)),
        .fileEnd(FileEnd(fileID: 2, size: 5 << 30, digest: Digest128(high: 0x0102030405060708, low: 0x1112131415161718))),
        .fileEnd(FileEnd(fileID: 9, size: 0, digest: nil)),
        .fileEnd(FileEnd(fileID: 9, size: 0, digest: nil, unreadable: true)),
        .batchAck(BatchAck(batchID: 7, results: [
            BatchAck.Result(fileID: 2, status: .hashMismatch, digest: Digest128(high: 1, low: 2)),
            BatchAck.Result(fileID: 3, status: .skipped, digest: .zero),
        ])),
        .end,
        .done(Done(files: 10_000, bytes: 1 << 40, skippedFiles: 3, skippedBytes: 4, patchedFiles: 5, deleted: 6, symlinks: 7, hardLinks: 8)),
        .error(ErrorFrame(.exists, "a/b exists; run the receiver with --overwrite")),
        .auth(AuthProof(mac: Array(200..<232))),
        .smallFiles(SmallFiles(files: [
            SmallFiles.File(fileID: 4, digest: Digest128(high: 5, low: 6), bytes: Array("small".utf8)),
            SmallFiles.File(fileID: 5, digest: nil, bytes: []),
        ])),
        .relay(Relay(hops: ["198.18.0.3:7878", "[fe80::1%eth0]:9000", "nas.local:7878"])),
        .relay(Relay(hops: [])),
        .report(HopReport(outcomes: [
            HopReport.Outcome(host: "198.18.0.3:7878", ok: true, files: 3, bytes: 1 << 33),
            HopReport.Outcome(host: "198.18.0.4:7878", ok: false, message: "connect: Connection refused"),
        ])),
    ]
}()

@Suite struct FrameCodecTests {
    @Test(arguments: sampleFrames)
    func roundTripAtExactSize(frame: Frame) throws {
        let bytes = FrameCodec.encode(frame)
        #expect(try FrameCodec.decode(bytes) == .frame(frame, consumed: bytes.count))
    }

    @Test(arguments: sampleFrames)
    func oneByteShortNeedsOneMore(frame: Frame) throws {
        let bytes = FrameCodec.encode(frame)
        #expect(try FrameCodec.decode(Array(bytes.dropLast())) == .needMore(1))
    }

    @Test(arguments: sampleFrames)
    func everyPrefixAsksForTheRest(frame: Frame) throws {
        let bytes = FrameCodec.encode(frame)
        for cut in 0..<bytes.count {
            let result = try FrameCodec.decode(Array(bytes.prefix(cut)))
            let expected = cut < FramePrefix.size ? FramePrefix.size - cut : bytes.count - cut
            #expect(result == .needMore(expected), "cut at \(cut)")
        }
    }

    @Test func decoderStopsAtTheFrameAndLeavesThePayload() throws {
        let header = DataHeader(fileID: 7, length: 5, offset: 10)
        var stream = [UInt8](repeating: 0, count: DataHeader.wireSize)
        stream.withUnsafeMutableBytes { header.encode(into: $0) }
        #expect(stream == FrameCodec.encode(.data(header)))
        stream += Array("hello".utf8) + FrameCodec.encode(.end)
        guard case .frame(.data(let got), let used) = try FrameCodec.decode(stream) else {
            Issue.record("no data frame")
            return
        }
        #expect(got == header)
        #expect(used == DataHeader.wireSize)
        #expect(Array(stream[used..<used + 5]) == Array("hello".utf8))
    }

    @Test func smallFilesBuiltInPlaceMatchTheCodec() throws {
        let files = [
            SmallFiles.File(fileID: 4, digest: Digest128(high: 5, low: 6), bytes: Array("small".utf8)),
            SmallFiles.File(fileID: 5, digest: nil, bytes: []),
            SmallFiles.File(fileID: 0xFFFF_FFFF, digest: Digest128(high: .max, low: 1), bytes: Array(repeating: 0xAB, count: 4096)),
        ]
        let expected = FrameCodec.encode(.smallFiles(SmallFiles(files: files)))
        let capacity = 4 + files.reduce(0) { $0 + SmallFiles.File.headerSize + $1.bytes.count }
        var body = [UInt8](repeating: 0xEE, count: capacity)
        let length = body.withUnsafeMutableBytes { raw in
            var b = SmallFilesBuilder(body: raw)
            for f in files {
                b.add(fileID: f.fileID, size: f.bytes.count) { (content: UnsafeMutableRawBufferPointer) -> Digest128? in
                    f.bytes.withUnsafeBytes { content.copyMemory(from: $0) }
                    return f.digest
                }
            }
            #expect(b.remaining == 0)
            return b.length
        }
        #expect(length == capacity)
        #expect(Array(expected[FramePrefix.size...]) == body)
    }

    @Test func largeSizesStay64Bit() throws {
        let big = UInt64(1) << 40 + 3
        let frame = Frame.fileEnd(FileEnd(fileID: 1, size: big, digest: nil))
        guard case .frame(.fileEnd(let end), _) = try FrameCodec.decode(FrameCodec.encode(frame)) else {
            Issue.record("no file-end")
            return
        }
        #expect(end.size == big)
    }
}

@Suite struct HostileFrameTests {
    func expectError(_ bytes: [UInt8], _ expected: WireError, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: expected, sourceLocation: sourceLocation) { try FrameCodec.decode(bytes) }
    }

    @Test func unknownTypeIsAnError() {
        expectError([0x77, 0, 0, 0, 0, 0, 0, 0], .unknownFrameType(0x77))
        expectError([0, 0, 0, 0, 0, 0, 0, 0], .unknownFrameType(0))
    }

    @Test func reservedBitsAreChecked() {
        expectError([FrameType.end.rawValue, 0, 1, 0, 0, 0, 0, 0], .reservedBitsSet)
    }

    @Test func oversizeLengthIsRefusedBeforeAnyBodyArrives() {
        // Only the prefix: the cap is checked before asking for the body.
        expectError([FrameType.batch.rawValue, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
                    .frameTooLarge(type: .batch, length: 0xFFFF_FFFF, cap: Batch.frameCap))
        expectError([FrameType.data.rawValue, 0, 0, 0, 0, 0, 0, 17],
                    .frameTooLarge(type: .data, length: 17, cap: 16))
    }

    @Test func hugeEntryCountIsRefusedWithoutReserving() {
        var w = WireWriter()
        w.u32(1)
        w.u32(0xFFFF_FFFF)
        let body = w.bytes
        var bytes = [FrameType.batch.rawValue, 0, 0, 0, 0, 0, 0, UInt8(body.count)]
        bytes += body
        #expect(throws: WireError.self) { try FrameCodec.decode(bytes) }
    }

    @Test func chunkOverTheCapIsRefused() {
        var bytes = FrameCodec.encode(.data(DataHeader(fileID: 1, length: 1, offset: 0)))
        bytes[12...15] = [0x7F, 0xFF, 0xFF, 0xFF]
        #expect(throws: WireError.self) { try FrameCodec.decode(bytes) }
    }

    @Test func offsetOverflowIsRefused() {
        var bytes = FrameCodec.encode(.data(DataHeader(fileID: 1, length: 16, offset: 0)))
        bytes[16...23] = [0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        #expect(throws: WireError.self) { try FrameCodec.decode(bytes) }
    }

    @Test func trailingBytesAreRefused() {
        var bytes = FrameCodec.encode(.relay(Relay(hops: [])))
        bytes[7] += 1
        bytes.append(0)
        #expect(throws: WireError.invalidField(.relay, field: "length", reason: "1 bytes left after the last field")) {
            try FrameCodec.decode(bytes)
        }
    }

    @Test func relayHostsAreHeldToHostAndPortCharacters() {
        for bad in ["a b:1", "x\u{1b}[2J:1", "", "h/../x:1", String(repeating: "a", count: 256)] {
            #expect(!Relay.isValidHost(bad), "\(bad.debugDescription)")
        }
        // Hand-built: the encoder does not check, the decoder must.
        var w = WireWriter()
        w.raw(repeatElement(0, count: FramePrefix.size))
        w.u16(1)
        w.u8(5)
        w.raw(Array("a\nb:1".utf8))
        var bytes = w.bytes
        bytes.withUnsafeMutableBytes { FramePrefix(type: .relay, length: UInt32(w.bytes.count - FramePrefix.size)).encode(into: $0) }
        #expect(throws: WireError.invalidField(.relay, field: "host", reason: "'a\\nb:1' is not HOST:PORT")) {
            try FrameCodec.decode(bytes)
        }
    }

    @Test func relayHopCountIsCapped() {
        var w = WireWriter()
        w.raw(repeatElement(0, count: FramePrefix.size))
        w.u16(UInt16(Relay.maxHops + 1))
        var bytes = w.bytes
        bytes.withUnsafeMutableBytes { FramePrefix(type: .relay, length: 2).encode(into: $0) }
        #expect(throws: WireError.invalidField(.relay, field: "hop count", reason: "65 is over the limit of 64")) {
            try FrameCodec.decode(bytes)
        }
    }

    @Test func badMagicNamesTheBytes() throws {
        var bytes = FrameCodec.encode(.hello(Hello(role: .sender)))
        bytes[8...11] = [0x47, 0x45, 0x54, 0x20]  // "GET "
        do {
            _ = try FrameCodec.decode(bytes)
            Issue.record("accepted a bad magic")
        } catch {
            #expect(error == .badMagic([0x47, 0x45, 0x54, 0x20]))
            #expect(error.description.contains("47 45 54 20"))
        }
    }

    @Test func truncatedBodyFieldIsNamed() {
        // A batch announcing one entry whose path is not there.
        var w = WireWriter()
        w.u32(1)
        w.u32(1)
        w.raw([UInt8](repeating: 0, count: 32))
        var bytes = [FrameType.batch.rawValue, 0, 0, 0, 0, 0, 0, UInt8(w.bytes.count)] + w.bytes
        // Claim a path of 200 bytes.
        bytes[8 + 8 + 6] = 0
        bytes[8 + 8 + 7] = 200
        #expect(throws: WireError.truncated(.batch, field: "path")) { try FrameCodec.decode(bytes) }
    }

    @Test func entryRulesTheDecoderEnforces() {
        func decodeEntry(_ mutate: (inout [UInt8]) -> Void) -> WireError? {
            var bytes = FrameCodec.encode(.batch(Batch(batchID: 1, entries: [
                ManifestEntry(fileID: 1, kind: .file, path: Array("f".utf8), mode: 0o644, size: 5, mtimeSeconds: 0, mtimeNanoseconds: 0)])))
            mutate(&bytes)
            do {
                _ = try FrameCodec.decode(bytes)
                return nil
            } catch {
                return error
            }
        }
        let at = FramePrefix.size + 8
        #expect(decodeEntry { $0[at + 4] = 9 } == .invalidField(.batch, field: "kind", reason: "unknown kind 9"))
        #expect(decodeEntry { $0[at + 5] = 0x80 } == .invalidField(.batch, field: "flags", reason: "unknown bits 0x80"))
        #expect(decodeEntry { $0[at + 4] = 1; $0[at + 5] = 1 } == .invalidField(.batch, field: "flags", reason: "only a file may be sparse or a link source"))
        #expect(decodeEntry { for k in 12..<20 { $0[at + k] = 0xFF } } == .invalidField(.batch, field: "size", reason: "only stdin content may have an unknown size"))
    }

    @Test func answersAndPlansHoldTheirCaps() {
        var w = WireWriter()
        w.raw(repeatElement(0, count: FramePrefix.size))
        w.u32(1)
        w.u8(1)
        w.raw([0, 0, 0])
        w.u32(1)
        w.u32(5)
        w.u8(4)
        w.raw([0, 0, 0])
        w.u32(512)  // chunk size under 4096
        w.u32(0)
        var bytes = w.bytes
        bytes.withUnsafeMutableBytes { FramePrefix(type: .answer, length: UInt32(w.bytes.count - FramePrefix.size)).encode(into: $0) }
        #expect(throws: WireError.invalidField(.answer, field: "chunk size", reason: "512 is below 4096")) { try FrameCodec.decode(bytes) }
        #expect(BatchAnswer.frames(batchID: 3, (0..<50_000).map { BatchAnswer.Item(fileID: UInt32($0), offer: .digest(.zero)) }).count == 2,
                "a long answer spans frames under the cap")
    }

    @Test func treeOrderIsComponentWise() {
        func before(_ a: String, _ b: String) -> Bool { PeerPath.precedesInTree(Array(a.utf8), Array(b.utf8)) }
        #expect(before("a", "a/b") && before("a/b", "a.b") && before("a/b/c", "a-c") && before("a-c", "a.b"))
        #expect(!before("a/b", "a") && !before("a", "a"))
        #expect(before("a/z", "aa") && before("", "a"))
    }

    /// Random prefixes of plausible frames: every input gets a definite
    /// answer (a frame that used exactly its prefix's length, a positive
    /// "need more", or a typed error), and the same answer again. Seeded,
    /// so a failure is reproducible; every kind of answer must turn up.
    @Test func randomBytesGetADefiniteAnswer() throws {
        var rng = SeededRandom(seed: 0xF7_2026)
        var frames = 0, needMore = 0, errors = 0
        for _ in 0..<20_000 {
            let n = Int.random(in: 0..<64, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n > 0 { bytes[0] = UInt8.random(in: 1...17, using: &rng) }
            if n > 3 { bytes[2] = 0; bytes[3] = 0 }
            if n > 7 { bytes[4] = 0; bytes[5] = 0; bytes[6] = 0; bytes[7] = UInt8.random(in: 0...UInt8(n - 8), using: &rng) }
            switch Result(catching: { try FrameCodec.decode(bytes) }) {
            case .success(.frame(let f, let used)):
                frames += 1
                let length = n >= 8 ? Int(bytes[4]) << 24 | Int(bytes[5]) << 16 | Int(bytes[6]) << 8 | Int(bytes[7]) : -1
                #expect(used == FramePrefix.size + length && used <= n)
                #expect(try FrameCodec.decode(Array(bytes[..<used])) == .frame(f, consumed: used))
            case .success(.needMore(let more)):
                needMore += 1
                #expect(more > 0)
            case .failure(let e):
                errors += 1
                #expect(e is WireError)
            }
        }
        #expect(frames > 100 && needMore > 100 && errors > 100, "frames \(frames), need more \(needMore), errors \(errors)")
    }
}

/// xorshift64*, for reproducible random tests.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}

@Suite struct VersionTests {
    @Test func highestCommonVersionWins() {
        #expect(ProtocolVersion.negotiate(localMin: 1, localMax: 3, peerMin: 2, peerMax: 5) == .success(3))
    }

    @Test func mismatchExplainsWhoToUpgrade() throws {
        guard case .failure(let m) = ProtocolVersion.negotiate(localMin: 2, localMax: 2, peerMin: 1, peerMax: 1) else {
            Issue.record("negotiated across a gap")
            return
        }
        #expect(m.description == "protocol version mismatch: this ft speaks v2, the peer speaks v1; upgrade ft on the peer")
        guard case .failure(let n) = ProtocolVersion.negotiate(localMin: 1, localMax: 1, peerMin: 2, peerMax: 4) else {
            Issue.record("negotiated across a gap")
            return
        }
        #expect(n.description.hasSuffix("the peer speaks v2..v4; upgrade ft on this host"))
    }

    @Test func futureHelloStillDecodes() throws {
        // A v7 hello with an extra field appended must still be readable, so
        // that the mismatch can be reported instead of a parse error.
        var bytes = FrameCodec.encode(.hello(Hello(minVersion: 7, maxVersion: 7, role: .sender)))
        bytes += [1, 2, 3, 4]
        let n = UInt32(bytes.count - 8)
        bytes[4...7] = [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
        guard case .frame(.hello(let h), _) = try FrameCodec.decode(bytes) else {
            Issue.record("no hello")
            return
        }
        #expect(h.minVersion == 7)
    }
}
