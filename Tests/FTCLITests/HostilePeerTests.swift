import Foundation
import Testing
import FTTestSupport
import FTWire

/// One long-running receiver takes every hostile session in turn; after
/// each, nothing may exist outside its directory, nothing inside it, and it
/// must still serve an honest push at the end.
@Suite(.serialized) struct HostilePeerTests {
    static let hostilePaths: [(String, [UInt8])] = [
        ("parent", Array("../x".utf8)),
        ("absolute", Array("/etc/x".utf8)),
        ("nested parent", Array("a/../../x".utf8)),
        ("deep parent", Array("a/b/../../../x".utf8)),
        ("dot", Array("./x".utf8)),
        ("trailing dotdot", Array("a/..".utf8)),
        ("empty", []),
        ("double slash", Array("a//x".utf8)),
        ("NUL", Array("a\u{0}b".utf8)),
        ("newline", Array("evil\nname".utf8)),
        ("ANSI escape", Array("\u{1B}[2J\u{1B}[31mred".utf8)),
        ("CSI C1", [0x61, 0xC2, 0x9B, 0x32, 0x4A]),
        ("invalid UTF-8", [0x61, 0xFF, 0x2F, 0x2E, 0x2E]),
        ("overlong slash", [0x2E, 0x2E, 0xC0, 0xAF, 0x78]),
        ("long name", Array(String(repeating: "n", count: 256).utf8)),
    ]

    @Test func hostilePathsAreRefusedAndNothingIsWritten() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let outside = tmp.sub("outside")
        let recv = try FTReceiver(dir: dst)

        for (label, path) in Self.hostilePaths {
            let peer = try RawPeer(port: recv.port)
            let answer = peer.offer([fileEntry(path)])
            let message = answer?.errorMessage
            #expect(message != nil, "\(label): expected a refusal, got \(String(describing: answer))")
            // Refused before any byte: the receiver closes after its error.
            #expect(peer.readUntilClosed().isEmpty, "\(label)")
        }
        #expect(listTree(dst).isEmpty)
        #expect(listTree(outside).isEmpty)
        #expect(listTree(tmp.path).sorted() == ["dst", "outside"])

        try honestPushStillWorks(recv, tmp)
        let end = recv.stop()
        #expect(end.stderr.isEmpty || !end.stderr.contains("Fatal"))
        // Every refusal was logged as an error event, escaped.
        let errors = recv.events.filter { $0["event"] as? String == "error" }
        #expect(errors.count == Self.hostilePaths.count)
        #expect(errors.allSatisfy { !(($0["message"] as? String) ?? "").contains("\u{1B}") })
    }

    @Test func symlinkPlantedInTheDestinationIsNotFollowed() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let outside = tmp.sub("outside")
        symlink(outside, dst + "/link")
        let recv = try FTReceiver(dir: dst)
        for path in ["link/x", "link/sub/x"] {
            let peer = try RawPeer(port: recv.port)
            let answer = peer.offer([fileEntry(Array(path.utf8))])
            #expect(answer?.errorMessage?.contains("symlink") == true, "\(path): \(String(describing: answer))")
        }
        // A file entry that is the link itself would replace the link only
        // with --overwrite; without it, it is refused as existing.
        let peer = try RawPeer(port: recv.port)
        #expect(peer.offer([fileEntry(Array("link".utf8))])?.errorMessage?.contains("exists") == true)
        #expect(listTree(outside).isEmpty)
        _ = recv.stop()
    }

    @Test func duplicateAndConflictingEntriesAreRefused() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"))
        let cases: [[ManifestEntry]] = [
            [fileEntry(Array("a".utf8), id: 1), fileEntry(Array("a".utf8), id: 2)],
            [fileEntry(Array("a".utf8), id: 1), fileEntry(Array("a/b".utf8), id: 2)],
            [fileEntry(Array("a".utf8), id: 1), fileEntry(Array("b".utf8), id: 1)],
        ]
        for entries in cases {
            let peer = try RawPeer(port: recv.port)
            #expect(peer.offer(entries)?.errorMessage != nil)
        }
        #expect(listTree(tmp.path + "/dst").isEmpty)
        _ = recv.stop()
    }

    @Test func badFramesGetAClearErrorAndTheReceiverKeepsServing() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst)

        // Not ft at all.
        var peer = try RawPeer(port: recv.port)
        peer.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(peer.readFrame()?.errorMessage?.contains("unknown frame type") == true)

        // ft's hello type but not its magic.
        peer = try RawPeer(port: recv.port)
        var hello = FrameCodec.encode(.hello(Hello(role: .sender)))
        hello[8...11] = [0x47, 0x45, 0x54, 0x20]
        peer.send(hello)
        #expect(peer.readFrame()?.errorMessage?.contains("not speaking the ft protocol") == true)

        // A future version only.
        peer = try RawPeer(port: recv.port)
        peer.send(.hello(Hello(minVersion: 9, maxVersion: 9, role: .sender)))
        let mismatch = peer.readFrame()?.errorMessage ?? ""
        #expect(mismatch.contains("version mismatch") && mismatch.contains("v9") && mismatch.contains("upgrade ft on this host"))

        // An oversize length in a prefix.
        peer = try RawPeer(port: recv.port)
        peer.handshake()
        peer.send([FrameType.batch.rawValue, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF])
        #expect(peer.readFrame()?.errorMessage?.contains("over the cap") == true)

        // A truncated frame, then the peer goes away.
        peer = try RawPeer(port: recv.port)
        peer.handshake()
        peer.send(Array(FrameCodec.encode(.batch(Batch(batchID: 1, entries: [fileEntry(Array("t".utf8))]))).prefix(20)))
        peer.hangUp()

        // Chunks that break the manifest's promises.
        for bad: DataHeader in [
            DataHeader(fileID: 1, length: 6, offset: 0),        // more than announced
            DataHeader(fileID: 99, length: 1, offset: 0),       // unknown file
            DataHeader(fileID: 1, length: 1, offset: 5),        // past the size
        ] {
            let p = try RawPeer(port: recv.port)
            #expect(p.offer([fileEntry(Array("d".utf8), size: 5)]).map { if case .answer = $0 { true } else { false } } == true)
            p.send(.data(bad))
            p.send([UInt8](repeating: 0x41, count: Int(bad.length)))
            #expect(p.readUntilClosed().compactMap(\.errorMessage).first != nil, "\(bad)")
        }

        // Fewer bytes than announced, then the trailer.
        let short = try RawPeer(port: recv.port)
        _ = short.offer([fileEntry(Array("short".utf8), size: 5)])
        short.send(.data(DataHeader(fileID: 1, length: 3, offset: 0)))
        short.send(Array("abc".utf8))
        short.send(.fileEnd(FileEnd(fileID: 1, size: 5, digest: .zero)))
        #expect(short.readUntilClosed().compactMap(\.errorMessage).first?.contains("ended after 3 of 5") == true)

        // A wrong digest: nothing under the final name.
        let liar = try RawPeer(port: recv.port)
        _ = liar.offer([fileEntry(Array("liar".utf8), size: 5)])
        liar.send(.data(DataHeader(fileID: 1, length: 5, offset: 0)))
        liar.send(Array("hello".utf8))
        liar.send(.fileEnd(FileEnd(fileID: 1, size: 5, digest: Digest128(high: 1, low: 2))))
        #expect(liar.readUntilClosed().compactMap(\.errorMessage).first?.contains("failed verification") == true)

        // A peer that drops in the middle of a chunk.
        let dropper = try RawPeer(port: recv.port)
        _ = dropper.offer([fileEntry(Array("dropped".utf8), size: 1 << 20)])
        dropper.send(.data(DataHeader(fileID: 1, length: 1 << 20, offset: 0)))
        dropper.send([UInt8](repeating: 7, count: 1000))
        usleep(200_000)
        dropper.hangUp()
        try honestPushStillWorks(recv, tmp)
        usleep(300_000)
        // Only the honest file under a final name. The dropped push left its
        // stored prefix as an ft partial, for a resume; the rest left nothing.
        let tree = listTree(dst)
        #expect(tree.filter { !$0.hasPrefix(".ft-") } == ["honest.txt"])
        #expect(tree.filter { $0.hasPrefix(".ft-") }.allSatisfy { $0.hasSuffix(".part") || $0.hasSuffix(".map") }, "\(tree)")
        #expect(tree.filter { $0.hasSuffix(".part") }.count <= 1, "\(tree)")
        _ = recv.stop()
    }

    func honestPushStillWorks(_ recv: FTReceiver, _ tmp: TempDir) throws {
        let src = tmp.sub("src") + "/honest.txt"
        writeFile(src, Array("still serving\n".utf8))
        let send = try run(ftPath, ["send", recv.address, src, "-q"])
        #expect(send.status == 0, "\(send.stderr)")
        try? FileManager.default.removeItem(atPath: tmp.path + "/src")
    }
}
