import Foundation
import Testing
import FTTestSupport
import FTTransfer
import FTWire

/// A real sender against a receiver under each attack of the red team's
/// report that targets the loop (floods before the proof, a deep
/// manifest, wrong codes): the real push must get through. The receiver's
/// stall meter (`-v`) is printed for the record as "STALL …" lines; these
/// are figures, not assertions (this machine is too noisy for timing
/// thresholds). For release figures, run with FT_TEST_FT=path/to/ft.
@Suite(.serialized) struct UnderAttackTests {
    func receiverStalls(_ label: String, attack: (FTReceiver, String) throws -> Void) throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let src = tmp.sub("src") + "/victim.bin"
        writeFile(src, patternBytes(64 << 20, seed: 3))
        let recv = try FTReceiver(dir: dst, extra: ["-v"])
        let t0 = Date()
        try attack(recv, src)
        let attackTime = Date().timeIntervalSince(t0)
        let done = recv.stop()
        let lines = (done.stderr).split(separator: "\n").filter { $0.contains("busy for") || $0.contains("longest loop stall") }
        #expect(lines.contains { $0.contains("longest loop stall") }, "\(label): the receiver's stall meter said nothing")
        print("STALL \(label): attack+victim \(String(format: "%.2f", attackTime)) s; \(lines.suffix(3).joined(separator: " | "))")
    }

    /// `strangers` connections say hello (and then `then`), the real
    /// sender pushes, then the strangers leave.
    func victimGetsThrough(_ recv: FTReceiver, _ src: String, during label: String, strangers: Int,
                           then: (RawPeer) -> Void) throws {
        var peers: [RawPeer] = []
        for _ in 0..<strangers {
            guard let p = try? RawPeer(port: recv.port) else { break }
            p.send(.hello(Hello(role: .sender, features: [.xxh3], sessionID: p.session, nonce: p.nonce)))
            then(p)
            peers.append(p)
        }
        let t = Date()
        let r = try run(ftPath, ["send", recv.address, src])
        #expect(r.status == 0, "\(r.stderr)")
        print("STALL victim push during \(label): status \(r.status) in \(String(format: "%.2f", Date().timeIntervalSince(t))) s")
        for p in peers { p.close() }
    }

    @Test func theRealSenderGetsThroughEachAttack() throws {
        try receiverStalls("1000 pre-auth big-prefix conns") { recv, src in
            try victimGetsThrough(recv, src, during: "flood", strangers: 1000) {
                // The prefix of a 2 MiB small-files frame, before any proof.
                $0.send([FrameType.smallFiles.rawValue, 0, 0, 0, 0, 0x20, 0, 0])
            }
        }
        try receiverStalls("4096 hello-only conns") { recv, src in
            try raiseOpenFiles(9000)
            try victimGetsThrough(recv, src, during: "4096 idle", strangers: 4096) { _ in }
        }
        try deep()
        try receiverStalls("60,000 one-byte chunks at alternating offsets") { recv, src in
            // Every other byte of a file, one chunk each: a range per chunk
            // (the red team's 30 s); the receiver caps the pieces a file holds.
            let p = try RawPeer(port: recv.port)
            _ = p.offer([fileEntry(Array("pieces.bin".utf8), size: 240_000)])
            nonisolated(unsafe) let reader = p
            Thread { _ = reader.readUntilClosed() }.start()
            var bytes: [UInt8] = []
            bytes.reserveCapacity(60_000 * 32)
            for i in 0..<60_000 {
                bytes += p.encoded(.data(DataHeader(fileID: 1, length: 1, offset: UInt64(i * 2))))
                bytes.append(0x41)
            }
            p.send(bytes)
            let r = try run(ftPath, ["send", recv.address, src])
            #expect(r.status == 0, "\(r.stderr)")
            print("STALL victim push during one-byte chunks: status \(r.status)")
            p.close()
        }
        try receiverStalls("200 wrong codes") { recv, src in
            var peers: [RawPeer] = []
            for _ in 0..<200 {
                let p = try RawPeer(port: recv.port)
                p.send(.hello(Hello(role: .sender, features: [.xxh3], sessionID: p.session, nonce: p.nonce)))
                guard case .hello(let h)? = p.readFrame() else { continue }
                p.send(.auth(AuthCode.proof(code: AuthCode.normalize("zzzz-zzzz-zzzz")!, role: .sender, session: p.session,
                                            senderNonce: p.nonce, receiverNonce: h.nonce)))
                peers.append(p)
            }
            let r = try run(ftPath, ["send", recv.address, src])
            #expect(r.status == 0, "\(r.stderr)")
            print("STALL victim push after wrong codes: status \(r.status)")
            for p in peers { p.close() }
        }
        try receiverStalls("no attack") { recv, src in
            let r = try run(ftPath, ["send", recv.address, src])
            #expect(r.status == 0, "\(r.stderr)")
            print("STALL victim alone: status \(r.status)")
        }
    }

    func deep() throws {
        try receiverStalls("30,000 entries 255 deep") { recv, src in
            let p = try RawPeer(port: recv.port)
            p.handshake()
            p.send(.pushInfo(PushInfo()))
            var names: [String] = []
            for _ in 0..<254 { names.append("b") }
            let base = names.joined(separator: "/")
            var entries: [ManifestEntry] = []
            var id: UInt32 = 1
            var prefix = ""
            for n in names {
                prefix = prefix.isEmpty ? n : prefix + "/" + n
                entries.append(fileEntry(Array(prefix.utf8), id: id, size: 0, kind: .directory)); id += 1
            }
            for i in 0..<30_000 {
                entries.append(fileEntry(Array((base + "/f\(String(format: "%06d", i))").utf8), id: id, size: 1)); id += 1
            }
            var batchID: UInt32 = 1
            var at = 0
            let t = Date()
            nonisolated(unsafe) let reader = p
            Thread { _ = reader.readUntilClosed() }.start()
            while at < entries.count {
                let end = min(at + 1900, entries.count)
                p.send(.batch(Batch(batchID: batchID, entries: Array(entries[at..<end]))))
                batchID += 1
                at = end
            }
            let r = try run(ftPath, ["send", recv.address, src])
            #expect(r.status == 0, "\(r.stderr)")
            print("STALL victim push during deep manifest: status \(r.status) in \(String(format: "%.2f", Date().timeIntervalSince(t))) s")
            p.close()
        }
    }
}
