import Foundation
import Testing
import FTTestSupport
import FTTransfer
import FTWire

@Suite(.serialized) struct AuthTests {
    func source(_ tmp: TempDir) -> String {
        let f = tmp.sub("src") + "/secret.txt"
        writeFile(f, Array("payload\n".utf8))
        return f
    }

    /// A wrong or missing code is refused before any byte lands, and it
    /// does not claim a --once receiver: the real sender still gets in.
    @Test func wrongOrMissingCodesAreRefusedAndDoNotEndAOnceReceiver() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let wrong = try run(ftPath, ["send", recv.address, source(tmp)], environment: ["FT_CODE": "aaaa-bbbb-cccc"])
        #expect(wrong.status == 3)
        #expect(wrong.stderr.contains("wrong code"), "\(wrong.stderr)")
        let none = try run(ftPath, ["send", recv.address, source(tmp)], environment: ["FT_CODE": "<unset>"])
        #expect(none.status == 3)
        #expect(none.stderr.contains("requires its one-time code") && none.stderr.contains("FT_CODE"), "\(none.stderr)")
        #expect(recv.child.isRunning, "a refused sender ended the --once receiver")
        #expect(listTree(dst).isEmpty)
        let right = try run(ftPath, ["send", recv.address, source(tmp), "-q"])
        #expect(right.status == 0, "\(right.stderr)")
        let end = recv.child.wait()
        #expect(end.status == 0, "\(end.stderr)")
        #expect(end.stdout.contains("wrong code") && end.stdout.contains("no code"), "\(end.stdout)")
        #expect(listTree(dst) == ["secret.txt"])
    }

    /// Port scans and silent connections do not claim a --once receiver.
    @Test func bareConnectsDoNotEndAOnceReceiver() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        for _ in 0..<5 { try RawPeer(port: recv.port).close() }
        let silent = try RawPeer(port: recv.port)
        defer { silent.close() }
        let right = try run(ftPath, ["send", recv.address, source(tmp), "-q"])
        #expect(right.status == 0, "\(right.stderr)")
        #expect(recv.child.wait().status == 0)
        #expect(listTree(dst) == ["secret.txt"])
    }

    @Test func theCodeFileWorksAndIsCheckedForItsMode() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let file = writeCodeFile(in: tmp.path, mode: 0o644)
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, source(tmp), "--code-file", file], environment: ["FT_CODE": "<unset>"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(send.stderr.contains("can be read by other users"), "\(send.stderr)")
        #expect(recv.child.wait().status == 0)
    }

    @Test func receiverMakesACodeAndKeepsItOutOfArgv() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"], environment: ["FT_CODE": "<unset>"])
        let ready = jsonEvents(recv.child.stdoutSoFar).first { $0["event"] as? String == "ready" }
        let code = try #require(ready?["code"] as? String)
        #expect(code.count == 14 && code.split(separator: "-").count == 3, "\(code)")
        #expect(code != testCode)
        let cmdline = (try? String(contentsOfFile: "/proc/\(recv.child.pid)/cmdline", encoding: .utf8)) ?? ""
        #expect(!cmdline.contains(code))
        let send = try run(ftPath, ["send", recv.address, source(tmp), "-q"], environment: ["FT_CODE": code])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)
    }

    @Test func noAuthAcceptsAnyoneAndSaysSo() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        var recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once", "--no-auth"])
        #expect(try run(ftPath, ["send", recv.address, source(tmp)], environment: ["FT_CODE": "<unset>"]).status == 0)
        #expect(recv.child.wait().status == 0)
        recv = try FTReceiver(dir: tmp.sub("dst2"), extra: ["--once", "--no-auth"])
        let withCode = try run(ftPath, ["send", recv.address, source(tmp)])
        #expect(withCode.status == 0)
        #expect(withCode.stderr.contains("accepts anyone"), "\(withCode.stderr)")
        _ = recv.child.wait()
    }

    /// Wrong guesses past the free ones are answered late (the log says
    /// how late); the right code from the same host is never refused.
    @Test func repeatedWrongCodesAreSlowedDownButTheRightOneGetsIn() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"))
        for i in 1...4 {
            let p = try RawPeer(port: recv.port)
            let reply = p.handshake(code: "aaaa-bbbb-ccc\(i)")
            #expect(reply?.errorMessage?.contains("wrong code") == true, "attempt \(i): \(String(describing: reply))")
        }
        #expect(recv.child.stderrSoFar.contains("answering it in 1 s"), "\(recv.child.stderrSoFar)")
        let p = try RawPeer(port: recv.port)
        let reply = p.handshake()
        guard case .auth? = reply else {
            Issue.record("the right code was refused: \(String(describing: reply))")
            return
        }
        _ = recv.stop()
    }

    @Test func aReceiverThatDoesNotKnowTheCodeIsNotTrusted() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        // A fake receiver: asks for a proof, then answers with garbage.
        let (listener, port) = loopbackListener()
        defer { close(listener) }
        let fake = Thread {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            sendBanner(fd)
            var buf = [UInt8](repeating: 0, count: 4096)
            _ = recv(fd, &buf, buf.count, 0)
            let hello = FrameCodec.encode(.hello(Hello(role: .receiver, features: [.xxh3, .auth])))
            _ = hello.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            _ = recv(fd, &buf, buf.count, 0)
            let bogus = FrameCodec.encode(.auth(AuthProof(mac: [UInt8](repeating: 1, count: 32))))
            _ = bogus.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            usleep(500_000)
            close(fd)
        }
        fake.start()
        let result = try run(ftPath, ["send", "127.0.0.1:\(port)", source(tmp)])
        #expect(result.status == 3)
        #expect(result.stderr.contains("could not prove it knows the code"), "\(result.stderr)")
    }
}
