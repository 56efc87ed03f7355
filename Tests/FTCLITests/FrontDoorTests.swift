import Foundation
import Testing
import FTTestSupport
import FTWire

/// What a new user meets first: each place where ft once said nothing,
/// said something wrong, or gave no way forward.
@Suite(.serialized) struct FrontDoorTests {
    func file(_ tmp: TempDir) -> String {
        let f = tmp.path + "/f"
        writeFile(f, [1, 2, 3])
        return f
    }

    @Test func anUnresolvableHostIsNamedWithAWayForward() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let r = try run(ftPath, ["send", "no-such-host.invalid", file(tmp)])
        #expect(r.status == 6)
        #expect(r.stderr.contains("no-such-host.invalid") && r.stderr.contains("check the host name"), "\(r.stderr)")
        #expect(!r.stderr.contains("errno"), "no errno where getaddrinfo gave none: \(r.stderr)")
    }

    @Test func aMistypedListenPortIsAUsageError() throws {
        let r = try run(ftPath, ["recv", "--listen", "7878x", "--dir", "/tmp"])
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("'7878x' is not a port"), "\(r.stderr)")
    }

    @Test func aChatCheckWithNothingListeningFailsLoudly() throws {
        let port = freePort()
        let r = try run(ftPath, ["chat", "tcp", "127.0.0.1:\(port)"], stdinFile: "/dev/null")
        #expect(r.status == 1)
        #expect(r.stderr.contains("127.0.0.1:\(port)") && r.stderr.contains("ECONNREFUSED"), "\(r.stderr)")
    }

    /// Aimed at a chat room (or any other service), the sender says so
    /// instead of "unknown frame type 0x2a"; --quiet names the peer once.
    @Test func somethingThatIsNotAReceiverIsCalledThat() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let port = freePort()
        let room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        let r = try run(ftPath, ["send", "127.0.0.1:\(port)", file(tmp), "-q"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("is not an ft receiver"), "\(r.stderr)")
        #expect(r.stderr.components(separatedBy: "127.0.0.1:\(port)").count == 2, "the peer named more than once: \(r.stderr)")
        room.kill(SIGINT)
        _ = room.wait()
    }

    /// The receiver speaks first: aimed at a service that waits for its
    /// client (a web server, an ft older than protocol 3), the sender
    /// writes nothing and says what it may be.
    @Test func aSilentServiceIsSentNothing() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (listener, port) = loopbackListener()
        defer { close(listener) }
        nonisolated(unsafe) var received = -1
        let service = Thread {
            let c = accept(listener, nil, nil)
            guard c >= 0 else { return }
            var total = 0
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = recv(c, &buf, buf.count, 0)
                if n <= 0 { break }
                total += n
            }
            received = total
            close(c)
        }
        service.start()
        let r = try run(ftPath, ["send", "127.0.0.1:\(port)", file(tmp)])
        #expect(r.status != 0)
        #expect(r.stderr.contains("did not open as an ft receiver") && r.stderr.contains("upgrade ft there")
                && r.stderr.contains("nothing was sent to it"), "\(r.stderr)")
        while !service.isFinished { usleep(10_000) }
        #expect(received == 0, "the sender wrote \(received) bytes into a service that said nothing")
    }

    @Test func anUnwritableDestinationIsFoundAtStart() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        chmod(tmp.path, 0o755)
        let dir = tmp.sub("ro")
        chmod(dir, 0o755)
        let r = try runAsNobody(ftPath, ["recv", "--dir", dir, "--once"])
        #expect(r.status == 6)
        #expect(r.stderr.contains("cannot write into \(dir)") && r.stderr.contains("EACCES"), "\(r.stderr)")
        #expect(!r.stderr.contains("ready"), "\(r.stderr)")
    }

    /// A code ft made is shown; one the user gave is not echoed into logs,
    /// and a guessable one is called out. The suggested command carries
    /// --encrypt when the receiver wants it.
    @Test func codesAreEchoedOnlyWhenMadeAndWeakOnesAreCalledOut() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let codeFile = writeCodeFile(in: tmp.path)
        let fromFile = try FTReceiver(dir: tmp.sub("a"), extra: ["--code-file", codeFile])
        let ready = jsonEvents(fromFile.child.stdoutSoFar).first { $0["event"] as? String == "ready" }
        #expect(ready?["code"] == nil || ready?["code"] is NSNull, "\(String(describing: ready))")
        #expect(ready?["auth"] as? String == "code-file")
        #expect(ready.map { Set($0.keys) } == readyKeys, "the same shape as ft chat's ready")
        _ = fromFile.stop()

        let human = try Child(ftPath, ["recv", "--listen", "127.0.0.1:0", "--dir", tmp.sub("b"), "--encrypt"],
                              environment: ["FT_CODE": "1111-1111-1111"])
        #expect(human.waitForOutput("send with"))
        human.kill(SIGINT)
        let out = human.wait()
        #expect(!out.stderr.contains("1111-1111-1111"), "the code was echoed: \(out.stderr)")
        #expect(out.stderr.contains("anyone could guess it"), "\(out.stderr)")
        #expect(out.stderr.contains("ft send --encrypt "), "\(out.stderr)")
    }

    /// Interrupted mid-push, the receiver says what is true: the stored
    /// part is kept, and pushing again resumes it.
    @Test func anInterruptedReceiverSaysWhatItKept() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src") + "/big.bin"
        writeFile(src, patternBytes(16 << 20, seed: 5))
        let dst = tmp.sub("dst")
        let recv = try Child(ftPath, ["recv", "--listen", "127.0.0.1:0", "--dir", dst], environment: ["FT_CODE": testCode])
        #expect(recv.waitForOutput("send with"))
        let listen = recv.stderrSoFar.components(separatedBy: "ready on ").dropFirst().first?.components(separatedBy: ",").first ?? ""
        let sender = try Child(ftPath, ["send", listen, src, "-q", "--limit", "4M"])
        for _ in 0..<500 where !listTree(dst).contains(where: { $0.hasSuffix(".part") }) { usleep(10_000) }
        usleep(300_000)
        recv.kill(SIGINT)
        let end = recv.wait()
        _ = sender.wait()
        #expect(end.stderr.contains("kept as .ft-*.part files"), "\(end.stderr)")
        #expect(!end.stderr.contains("removed"), "\(end.stderr)")
        #expect(listTree(dst).contains { $0.hasSuffix(".part") }, "\(listTree(dst))")
    }

    /// A push of the same file whose session has not let go yet (its
    /// sender just died): the receiver waits for the partial to be
    /// released, then resumes it, instead of refusing at once.
    @Test func aResendWhileTheDeadPushStillHoldsThePartialResumes() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src") + "/big.bin"
        let bytes = patternBytes(8 << 20, seed: 9)
        writeFile(src, bytes)
        chmod(src, 0o644)
        var t = [timespec(tv_sec: 1_700_000_000, tv_nsec: 0), timespec(tv_sec: 1_700_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, src, &t, 0)
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst)
        // The earlier push: same entry, its first MiB sent, still connected.
        let dying = try RawPeer(port: recv.port)
        _ = dying.offer([fileEntry(Array("big.bin".utf8), size: UInt64(bytes.count))])
        dying.send(.data(DataHeader(fileID: 1, length: 1 << 20, offset: 0)))
        dying.send(Array(bytes[..<(1 << 20)]))
        for _ in 0..<500 where !listTree(dst).contains(where: { $0.hasSuffix(".part") }) { usleep(10_000) }
        let again = try Child(ftPath, ["send", recv.address, src, "-q", "--json"])
        usleep(600_000)
        dying.hangUp()
        let r = again.wait()
        #expect(r.status == 0, "sender: \(r.stderr) \(r.stdout.suffix(400))")
        #expect((doneEvent(r.stdout)?["bytes_skipped"] as? Int ?? 0) >= 1 << 20, "did not resume: \(r.stdout.suffix(300))")
        expectSame(readFile(dst + "/big.bin"), bytes)
        _ = recv.stop()
    }

    /// After a resume both sides count the same (what was sent, what was
    /// already there) and name the push by the same session label.
    @Test func bothSidesCountAResumeAlike() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src") + "/big.bin"
        writeFile(src, patternBytes(40 << 20, seed: 12))
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst)
        let first = try Child(ftPath, ["send", recv.address, src, "-q", "--limit", "16M"])
        // Past the first map (written every 16 MiB), then killed.
        for _ in 0..<1000 where !listTree(dst).contains(where: { $0.hasSuffix(".map") }) { usleep(10_000) }
        first.kill(SIGKILL)
        _ = first.wait()
        let again = try run(ftPath, ["send", recv.address, src, "-q", "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        _ = recv.stop()
        let sender = try #require(doneEvent(again.stdout))
        let receiver = try #require(recv.events.last { $0["event"] as? String == "done" })
        #expect((sender["bytes_skipped"] as? Int ?? 0) >= 16 << 20, "\(sender)")
        #expect((sender["session"] as? String)?.count == 8 && sender["session"] as? String == receiver["session"] as? String,
                "both logs name the push alike: sender \(sender["session"] ?? "-"), receiver \(receiver["session"] ?? "-")")
        for key in ["bytes_sent", "bytes_skipped", "files"] {
            #expect(sender[key] as? Int == receiver[key] as? Int, "\(key): sender \(sender[key] ?? "-"), receiver \(receiver[key] ?? "-")")
        }
    }

    /// One unreadable file does not abort a tree: the rest arrives, the
    /// file is named, nothing is counted as "already there", and the exit
    /// code (23, as rsync's) says the push was partial.
    @Test func anUnreadableFileLeavesTheRestAndExits23() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        chmod(tmp.path, 0o755)
        let root = tmp.sub("src/t")
        chmod(tmp.path + "/src", 0o755)
        chmod(root, 0o755)
        writeFile(root + "/a", [1, 2])
        writeFile(root + "/secret", [3, 4])
        chmod(root + "/a", 0o644)
        chmod(root + "/secret", 0o000)
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let r = try runAsNobody(ftPath, ["send", recv.address, root])
        #expect(r.status == 23, "\(r.stderr)")
        #expect(r.stderr.contains("t/secret") && r.stderr.contains("EACCES"), "\(r.stderr)")
        #expect(!r.stderr.contains("already there"), "\(r.stderr)")
        _ = recv.child.wait()
        #expect(listTree(dst) == ["t", "t/a"], "\(listTree(dst))")
    }

    /// Starts a push of `root` at 2 MiB/s and returns once some bytes of
    /// its first file have arrived in `dst`.
    private func slowPushBegun(_ root: String, to recv: FTReceiver, _ dst: String) throws -> Child {
        let sender = try Child(ftPath, ["send", recv.address, root, "--limit", "2M"])
        var begun = false
        for _ in 0..<2000 {
            begun = listTree(dst).contains { path in
                var st = stat()
                return lstat(dst + "/" + path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG && st.st_size > 0
            }
            if begun { break }
            usleep(5_000)
        }
        #expect(begun, "no bytes of the first file arrived: \(listTree(dst))")
        return sender
    }

    /// A file the walk saw, swapped for a fifo before its turn (by anyone
    /// who can write its directory), is left out and named. Its open would
    /// have waited for a writer, on the sender's loop thread, forever:
    /// the push must end on its own, with the rest intact.
    @Test func aFileSwappedForAFifoBeforeItsTurnIsLeftOut() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/t")
        writeFile(root + "/a", patternBytes(4 << 20, seed: 1))
        writeFile(root + "/b", patternBytes(1 << 20, seed: 2))
        writeFile(root + "/c", [1, 2, 3])
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        // Big files go largest first: `a` takes about 2 s at 2 MiB/s, and
        // `b` (big) and `c` (small) are swapped once its bytes arrive.
        let sender = try slowPushBegun(root, to: recv, dst)
        for name in ["b", "c"] {
            unlink(root + "/" + name)
            #expect(mkfifo(root + "/" + name, 0o644) == 0)
        }
        let sent = sender.wait(seconds: 30)
        #expect(sent.status == 23, "\(sent.stderr)")
        for name in ["t/b", "t/c"] {
            #expect(sent.stderr.contains("skipping \(name): ") && sent.stderr.contains("no longer a regular file"), "\(sent.stderr)")
        }
        #expect(sent.stderr.contains("2 unreadable entries skipped"), "\(sent.stderr)")
        #expect(recv.child.wait().status == 0)
        #expect(listTree(dst) == ["t", "t/a"], "\(listTree(dst))")
        expectSame(readFile(dst + "/t/a"), readFile(root + "/a"), "t/a")
    }

    /// A directory of the tree swapped, after the walk, for a symlink to
    /// somewhere else that holds files of the same names, sizes and mtimes
    /// (a file's owner sets its mtime, so the manifest check cannot tell):
    /// the sender must not push what the link points at. Each file under
    /// it is left out and named; nothing from outside the tree arrives.
    @Test func aDirectorySwappedForASymlinkAfterTheWalkIsNotFollowed() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/t")
        let outside = tmp.sub("outside")
        _ = tmp.sub("src/t/d")
        writeFile(root + "/a", patternBytes(4 << 20, seed: 1))
        let files = [("b", 1 << 20), ("c", 3)]
        for (name, size) in files {
            writeFile(root + "/d/" + name, patternBytes(size, seed: 2))
            writeFile(outside + "/" + name, patternBytes(size, seed: 9))
            var st = stat()
            #expect(stat(root + "/d/" + name, &st) == 0)
            var times = [st.st_atim, st.st_mtim]
            #expect(utimensat(AT_FDCWD, outside + "/" + name, &times, 0) == 0)
        }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        // As above: `a` goes first and slowly; `d` is swapped once its
        // bytes arrive, before `d/b` (big) and `d/c` (small) are read.
        let sender = try slowPushBegun(root, to: recv, dst)
        #expect(rename(root + "/d", tmp.path + "/d.moved") == 0)
        #expect(symlink(outside, root + "/d") == 0)
        let sent = sender.wait(seconds: 30)
        #expect(sent.status == 23, "\(sent.stderr)")
        for (name, _) in files {
            #expect(sent.stderr.contains("skipping t/d/\(name): ") && sent.stderr.contains("is now a symlink"), "\(sent.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dst + "/t/d/" + name), "t/d/\(name) arrived from outside the tree")
        }
        #expect(recv.child.wait().status == 0)
        #expect(listTree(dst) == ["t", "t/a", "t/d"], "\(listTree(dst))")
        expectSame(readFile(dst + "/t/a"), readFile(root + "/a"), "t/a")
    }
}
