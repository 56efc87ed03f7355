import Foundation
import Testing
import FTTestSupport
import FTWire

/// Strangers without the code: what they can make a receiver hold, and
/// whether a real sender still gets through while they try.
@Suite(.serialized) struct PreAuthTests {
    static func source(_ tmp: TempDir) -> (String, [UInt8]) {
        let f = tmp.sub("src") + "/real.bin"
        let bytes = patternBytes(300_000, seed: 70)
        writeFile(f, bytes)
        return (f, bytes)
    }

    /// Hello, then the start of a 2 MiB frame: refused at its prefix, and
    /// hundreds of connections that stop after their hello cost the
    /// receiver a few KiB each.
    @Test func beforeTheProofFramesAreSmallAndConnectionsCheap() throws {
        try raiseOpenFiles(1200)
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"))
        let big = try RawPeer(port: recv.port)
        big.send(.hello(Hello(role: .sender, features: [.xxh3], sessionID: big.session, nonce: big.nonce)))
        _ = big.readFrame()
        var prefix = prefixBytes(.smallFiles, length: 2 << 20)
        prefix += [UInt8](repeating: 0, count: 1000)
        big.send(prefix)
        let answer = big.readUntilClosed().compactMap(\.errorMessage).first ?? ""
        #expect(answer.contains("before the code was proved"), "\(answer)")

        let before = rssKiB(recv.child.pid)
        var waiting: [RawPeer] = []
        for _ in 0..<500 {
            let p = try RawPeer(port: recv.port)
            p.send(.hello(Hello(role: .sender, features: [.xxh3], sessionID: p.session, nonce: p.nonce)))
            waiting.append(p)
        }
        for p in waiting { _ = p.readFrame() }
        let perConnection = (rssKiB(recv.child.pid) - before) / 500
        #expect(perConnection <= 16, "\(perConnection) KiB per pending connection")
        let (f, bytes) = Self.source(tmp)
        #expect(try run(ftPath, ["send", recv.address, f, "-q"]).status == 0)
        expectSame(readFile(tmp.path + "/dst/real.bin"), bytes)
        for p in waiting { p.close() }
        _ = recv.stop()
    }

    /// Every pending slot taken by one stranger: the oldest goes for the
    /// newcomer, so the sender gets in.
    @Test func aStrangerWhoFillsThePendingSlotsDoesNotKeepTheSenderOut() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--max-pending", "16"])
        var squatters: [RawPeer] = []
        for _ in 0..<40 { squatters.append(try RawPeer(port: recv.port)) }
        let (f, bytes) = Self.source(tmp)
        let push = try run(ftPath, ["send", recv.address, f, "-q"], seconds: 30)
        #expect(push.status == 0, "\(push.stderr)")
        expectSame(readFile(tmp.path + "/dst/real.bin"), bytes)
        // The first squatters were dropped, with a reason.
        let dropped = squatters[0].readUntilClosed().compactMap(\.errorMessage).first ?? ""
        #expect(dropped.contains("not proved the code"), "\(dropped)")
        for p in squatters { p.close() }
        _ = recv.stop()
    }

    /// A connection that trickles bytes still has to finish its handshake
    /// within the handshake's deadline.
    @Test func aTricklingHandshakeIsCutAtItsDeadline() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"))
        let p = try RawPeer(port: recv.port)
        p.send(.hello(Hello(role: .sender, features: [.xxh3], sessionID: p.session, nonce: p.nonce)))
        _ = p.readFrame()
        // A proof, a byte a second: 40 bytes would take 40 s.
        let proof = prefixBytes(.auth, length: 32) + [UInt8](repeating: 1, count: 32)
        var closed = false
        for b in proof.prefix(30) {
            p.send([b])
            sleep(1)
            if recv.child.stdoutSoFar.contains("within 10 s of connecting") {
                closed = true
                break
            }
        }
        #expect(closed, "the trickling connection outlived the handshake deadline: \(recv.child.stdoutSoFar) \(recv.child.stderrSoFar)")
        p.close()
        _ = recv.stop()
    }
}
