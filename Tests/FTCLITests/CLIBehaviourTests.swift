import Foundation
import Testing
import FTTestSupport
import FTWire

@Suite(.serialized) struct CLIBehaviourTests {
    @Test func existingFileIsKeptUnlessOverwriteIsGiven() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src") + "/f.txt"
        let dst = tmp.sub("dst")
        writeFile(src, Array("new contents\n".utf8))
        writeFile(dst + "/f.txt", Array("precious\n".utf8))

        var recv = try FTReceiver(dir: dst, extra: ["--once"])
        let refused = try run(ftPath, ["send", recv.address, src])
        #expect(refused.status == 4)
        #expect(refused.stderr.contains("'f.txt' exists") && refused.stderr.contains("--overwrite"), "\(refused.stderr)")
        #expect(recv.child.wait().status == 4, "ft recv --once says why its push failed, as the sender does")
        expectSame(readFile(dst + "/f.txt"), Array("precious\n".utf8), "kept file")
        #expect(listTree(dst) == ["f.txt"])

        recv = try FTReceiver(dir: dst, extra: ["--once", "--overwrite"])
        let replaced = try run(ftPath, ["send", recv.address, src, "-q"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(recv.child.wait().status == 0)
        expectSame(readFile(dst + "/f.txt"), Array("new contents\n".utf8), "replaced file")
    }

    @Test func killedSenderLeavesNothingUnderTheFinalName() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        // stdin lets the test hold the sender mid-push for as long as it likes.
        let sender = try Child(ftPath, ["send", recv.address, "-", "--name", "victim.bin", "--json"])
        sender.write(patternBytes(3 << 20, seed: 4))
        #expect(recv.child.waitForOutput("\"event\":\"progress\""), "the push never started")
        let partials = listTree(dst).filter { $0.hasPrefix(".ft-") && $0.hasSuffix(".part") }
        #expect(partials.count == 1, "bytes land in a temp file: \(listTree(dst))")
        sender.kill(SIGKILL)
        _ = sender.wait()
        let end = recv.child.wait()
        #expect(end.status == 1)
        #expect(end.stdout.contains("closed") || end.stdout.contains("lost"), "\(end.stdout)")
        #expect(listTree(dst).isEmpty, "no final name, no temp file: \(listTree(dst))")
    }

    @Test func ioUringCarriesThePayload() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let size = 32 << 20
        let src = tmp.sub("src") + "/payload"
        writeFile(src, patternBytes(size, seed: 21))
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once", "--io", "splice"])
        let send = try run(ftPath, ["send", recv.address, src, "--io", "splice", "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)

        // Receiver: socket→pipe and pipe→file splices on the ring, each
        // carrying the whole payload.
        let done = try #require(recv.events.first { $0["event"] as? String == "done" })
        let engine = try #require(done["engine"] as? [String: Any])
        #expect(engine["backend"] as? String == "io_uring")
        let ops = try #require(engine["operations"] as? [String: [String: Any]])
        #expect((ops["splice"]?["bytes"] as? Int ?? 0) >= 2 * size, "\(ops)")
        #expect((ops["recv"]?["bytes"] as? Int ?? 0) < 1 << 20, "only frame headers go through recv: \(ops)")
        // Sender, splice path: file→pipe→socket on the ring as well.
        let sent = try #require(send.stdoutLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .first { $0["event"] as? String == "done" })
        let sops = try #require((sent["engine"] as? [String: Any])?["operations"] as? [String: [String: Any]])
        #expect((sops["splice"]?["bytes"] as? Int ?? 0) >= 2 * size, "\(sops)")
        // The progress event just before done is the totals, naming the file
        // (it named nothing, with a null size).
        let events = send.stdoutLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let doneAt = try #require(events.firstIndex { $0["event"] as? String == "done" })
        let closing = events[doneAt - 1]
        #expect(closing["event"] as? String == "progress" && closing["file"] as? String == "payload", "\(closing)")
        #expect(closing["file_bytes"] as? Int == size && closing["file_size"] as? Int == size, "\(closing)")
        #expect(closing["bytes"] as? Int == size && closing["total_bytes"] as? Int == size, "\(closing)")
    }

    @Test func noPayloadThroughReadOrWriteSyscalls() throws {
        // strace sees system calls, not ring operations: if the payload moved
        // through read/write/recv/send/splice syscalls, their count would be
        // in the hundreds for 32 MiB.
        let strace = "/usr/bin/strace"
        #expect(FileManager.default.isExecutableFile(atPath: strace), "strace missing: run tools/deps")
        guard FileManager.default.isExecutableFile(atPath: strace) else { return }
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src") + "/payload"
        writeFile(src, patternBytes(32 << 20, seed: 22))
        let log = tmp.path + "/strace.txt"
        let recv = try Child(strace, ["-f", "-c", "-o", log, "-e", "trace=read,write,pread64,pwrite64,recvfrom,recvmsg,sendto,sendmsg,splice,sendfile,readv,writev",
                                      ftPath, "recv", "--listen", "127.0.0.1:0", "--dir", tmp.sub("dst"), "--once", "--json"])
        #expect(recv.waitForOutput("\"ready\""))
        let line = recv.stdoutSoFar.split(separator: "\n").first { $0.contains("\"ready\"") }!
        let port = line.components(separatedBy: "\"listen\":\"127.0.0.1:")[1].prefix { $0.isNumber }
        let send = try run(ftPath, ["send", "127.0.0.1:\(port)", src, "-q"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.wait().status == 0)
        let summary = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let total = summary.split(separator: "\n").first { $0.contains("total") }
            .flatMap { $0.split(separator: " ").compactMap { Int($0) }.dropFirst(1).first } ?? -1
        #expect(total >= 0 && total < 60, "payload syscalls seen by strace:\n\(summary)")
        expectSame(readFile(tmp.path + "/dst/payload"), readFile(src), "payload")
    }

    @Test func manySendersAtOnce() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst)
        var senders: [Child] = []
        for i in 0..<8 {
            let f = tmp.sub("src\(i)") + "/file\(i).bin"
            writeFile(f, patternBytes((1 << 20) * (i + 1) + i, seed: UInt64(100 + i)))
            senders.append(try Child(ftPath, ["send", recv.address, f, "-q"]))
        }
        for (i, s) in senders.enumerated() {
            let r = s.wait()
            #expect(r.status == 0, "sender \(i): \(r.stderr)")
        }
        _ = recv.stop()
        for i in 0..<8 {
            expectSame(readFile(dst + "/file\(i).bin"), patternBytes((1 << 20) * (i + 1) + i, seed: UInt64(100 + i)), "file\(i)")
        }
    }

    @Test func fallbackEngineWarnsOnceAndStillDelivers() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let helper = productsDirectory + "/no-io-uring"
        let src = tmp.sub("src") + "/f"
        writeFile(src, patternBytes(5 << 20, seed: 31))
        let recv = try Child(helper, [ftPath, "recv", "--listen", "127.0.0.1:0", "--dir", tmp.sub("dst"), "--once", "--json"])
        #expect(recv.waitForOutput("\"ready\""))
        let ready = recv.stdoutSoFar.split(separator: "\n").first { $0.contains("\"ready\"") }!
        #expect(ready.contains("\"engine\":\"poll\""))
        let port = ready.components(separatedBy: "\"listen\":\"127.0.0.1:")[1].prefix { $0.isNumber }
        let send = try run(helper, [ftPath, "send", "127.0.0.1:\(port)", src])
        #expect(send.status == 0, "\(send.stderr)")
        let end = recv.wait()
        #expect(end.status == 0)
        for out in [end.stderr, send.stderr] {
            let warnings = out.split(separator: "\n").filter { $0.contains("io_uring is unavailable") }
            #expect(warnings.count == 1, "one clear warning, got: \(out)")
            #expect(out.contains("EPERM"))
        }
        expectSame(readFile(tmp.path + "/dst/f"), readFile(src), "payload on the fallback engine")
    }

    /// A side warms libcrypto up on a helper thread while it connects; a
    /// push refused at once exits while that thread may still be in
    /// libcrypto. Its atexit cleanup used to free what the thread was using:
    /// about 1 in 80 such exits on a loaded machine died of SIGSEGV or
    /// SIGILL instead of exiting 6. Many tries make a return likely to show.
    @Test func aPushRefusedAtOnceExitsSixEveryTime() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let f = tmp.path + "/f"
        writeFile(f, [1])
        var statuses: [Int32: Int] = [:]
        for _ in 0..<60 {
            statuses[try run(ftPath, ["send", "127.0.0.1:1", f]).status, default: 0] += 1
        }
        #expect(statuses == [6: 60], "exit statuses and their counts: \(statuses)")
    }

    @Test func errorsNameTheAddressOrPathAndUsageErrorsExitTwo() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let f = tmp.path + "/f"
        writeFile(f, [1])
        // Nothing listens on port 1.
        let refused = try run(ftPath, ["send", "127.0.0.1:1", f])
        #expect(refused.status == 6)
        #expect(refused.stderr.contains("127.0.0.1:1") && refused.stderr.contains("ECONNREFUSED"), "\(refused.stderr)")
        let missing = try run(ftPath, ["send", "127.0.0.1:1", tmp.path + "/nope"])
        #expect(missing.status == 6)
        #expect(missing.stderr.contains(tmp.path + "/nope") && missing.stderr.contains("ENOENT"), "\(missing.stderr)")
        for args in [["send", "127.0.0.1"], ["send", "h:99999", f], ["send", "h", f, "--chunk", "0"],
                     ["send", "h", f, "--io", "bogus"], ["recv", "--listen", "x:y"]] {
            let r = try run(ftPath, args)
            #expect(r.status == 2, "\(args): \(r.stderr)")
        }
    }
}
