import Foundation
import Testing
import FTTestSupport

/// `ft send -P N` against a real `ft recv` on loopback: chunks on extra
/// connections, every byte compared.
@Suite(.serialized) struct ParallelStreamsTests {
    func opCount(_ event: [String: Any]?, _ kind: String) -> Int {
        let ops = (event?["engine"] as? [String: Any])?["operations"] as? [String: Any]
        return (ops?[kind] as? [String: Any])?["count"] as? Int ?? 0
    }

    @Test func aTreeWithBigAndSmallFilesArrivesByteIdenticalOverFourStreams() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/tree")
        tmp.sub("src/tree/sub/empty dir")
        for (i, size) in [(1, (9 << 20) + 17), (2, 5 << 20), (3, (1 << 20) - 1), (4, 3 << 20)] {
            writeFile(root + "/big-\(i).bin", patternBytes(size, seed: UInt64(200 + i)))
        }
        for i in 0..<30 { writeFile(root + "/sub/small-\(i)", patternBytes(100 + i * 301, seed: UInt64(300 + i))) }
        writeFile(root + "/sub/空.txt", [])
        let r = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"])
        // Paced, so the streams are up before the chunks run out.
        let send = try run(ftPath, ["send", "-P", "4", r.address, root, "--json", "--limit", "64M"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(listTree(root) == listTree(tmp.path + "/dst/tree"))
        for p in listTree(root) where !p.hasSuffix("empty dir") && p != "sub" {
            expectSame(readFile(root + "/" + p), readFile(tmp.path + "/dst/tree/" + p), p)
        }
        let done = jsonEvents(send.stdout).first { $0["event"] as? String == "done" }
        #expect(done?["verified"] as? Bool == true)
        #expect(opCount(done, "connect") == 5, "the push's connection and four streams")
        let recvDone = r.events.first { $0["event"] as? String == "done" }
        #expect(opCount(recvDone, "accept") == 5)
        #expect(r.child.wait(seconds: 20).status == 0)
    }

    @Test func aStreamCutMidPushHandsItsChunksToTheOthers() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, bytes) = tmp.sourceFile(40 << 20, seed: 210)
        let r = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once", "-v"])
        // 40 MiB at 16 MiB/s: the stream dies about a second in.
        let sender = try Child(ftPath, ["send", "-P", "3", r.address, src, "--json", "--limit", "16M"])
        #expect(r.child.waitForOutput("data stream 2 from", seconds: 20))
        #expect(r.child.waitForOutput("\"event\":\"progress\"", seconds: 20))
        Thread.sleep(forTimeInterval: 0.7)
        let line = r.child.stderrSoFar.split(separator: "\n").first { $0.contains("data stream 2 from") }!
        let port = String(line.split(separator: ":").last!)
        // Destroys that one connection in the kernel, as a broken link would.
        let cut = try run("/usr/bin/ss", ["-K", "( sport = :\(r.port) and dport = :\(port) )"])
        #expect(cut.stdout.contains(":\(port)"), "ss -K found the stream: \(cut.stdout) \(cut.stderr)")
        let send = sender.wait(seconds: 120)
        #expect(send.status == 0, "\(send.stderr)")
        #expect(send.stderr.contains("broke"), "the sender says a stream broke: \(send.stderr)")
        #expect(r.child.stderrSoFar.contains("broke"), "the receiver says so too")
        expectSame(readFile(tmp.path + "/dst/data.bin"), bytes, "data.bin")
        #expect(r.child.wait(seconds: 20).status == 0)
    }

    @Test func stdinAndFilesTogether() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let big = patternBytes((6 << 20) + 5, seed: 220)
        let piped = patternBytes((3 << 20) + 11, seed: 221)
        let src = tmp.sub("src") + "/big.bin"
        writeFile(src, big)
        writeFile(tmp.path + "/src/piped", piped)
        let r = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"])
        let send = try run("/bin/sh", ["-c", "\"$0\" send -P 2 \(r.address) \(src) - --name piped.bin --limit 64M < \(tmp.path)/src/piped", ftPath])
        #expect(send.status == 0, "\(send.stderr)")
        expectSame(readFile(tmp.path + "/dst/big.bin"), big, "big.bin")
        expectSame(readFile(tmp.path + "/dst/piped.bin"), piped, "stdin")
        _ = r.child.wait(seconds: 20)
    }

    @Test func aReceiverWritingToStdoutTakesOneStreamAndSaysSo() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let bytes = patternBytes(3 << 20, seed: 230)
        let src = tmp.sub("src") + "/one.bin"
        writeFile(src, bytes)
        let recv = try FTReceiver(dir: tmp.path, extra: ["--stdout"])
        let send = try run(ftPath, ["send", "-P", "4", recv.address, src])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(send.stderr.contains("falls back to one"), "\(send.stderr)")
        let got = recv.child.wait()
        #expect(got.status == 0)
        expectSame(got.stdoutBytes, bytes, "stdout")
    }

    @Test func badStreamArgumentsAreRefused() throws {
        for (args, needle) in [
            (["-P", "0", "h", "x"], "between 1 and 16"),
            (["-P", "17", "h", "x"], "between 1 and 16"),
            (["-P", "2", "--io", "copy", "h", "x"], "sendfile or splice"),
            (["-P", "2", "--encrypt", "h", "x"], "--encrypt"),
            (["-P", "2", "--to", "a,b", "x"], "--to"),
        ] {
            let r = try run(ftPath, ["send"] + args)
            #expect(r.status == 64 || r.status == 2, "\(args): \(r.status)")
            #expect(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
    }
}
