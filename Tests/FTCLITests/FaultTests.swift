import Foundation
import Testing
import FTTestSupport
import FTTransfer
import FTWire

@Suite(.serialized) struct FaultTests {
    @Test func senderKilledAtTwentyRandomPointsAlwaysResumesIdentical() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let size = 24 << 20
        let (src, bytes) = tmp.sourceFile(size, seed: 77)
        let dst = tmp.sub("dst")
        var resumedRuns = 0
        for round in 1...20 {
            // Paced at 48 MiB/s, the push takes half a second: kill it somewhere inside.
            try pushKilledMidway(into: dst, [src], limit: "48M", pauseMicroseconds: 30_000...450_000)
            #expect(!FileManager.default.fileExists(atPath: dst + "/data.bin"), "round \(round): a torn file under the final name")

            let again = try FTReceiver(dir: dst, extra: ["--once"])
            let resume = try run(ftPath, ["send", again.address, src, "--json"])
            #expect(resume.status == 0, "round \(round): \(resume.stderr)")
            #expect(again.child.wait().status == 0)
            expectSame(readFile(dst + "/data.bin"), bytes, "round \(round)")
            let done = try #require(doneEvent(resume.stdout), "round \(round)")
            let sent = done["bytes_sent"] as? Int ?? -1
            let skipped = done["bytes_skipped"] as? Int ?? -1
            #expect(sent + skipped == size, "round \(round): \(sent) sent + \(skipped) skipped")
            if skipped > 0 { resumedRuns += 1 }
            #expect(listTree(dst) == ["data.bin"], "round \(round): partials left: \(listTree(dst))")
            try FileManager.default.removeItem(atPath: dst + "/data.bin")
        }
        // Kills after the first 16 MiB mark leave a map; most rounds resume.
        #expect(resumedRuns >= 3, "only \(resumedRuns) of 20 rounds resumed anything")
    }

    @Test func receiverKilledMidPushIsReportedAndTheNextRunResumes() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let size = 48 << 20
        let bytes = patternBytes(size, seed: 78)
        let src = tmp.sub("src") + "/big.bin"
        writeFile(src, bytes)
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let sender = try Child(ftPath, ["send", recv.address, src, "--limit", "32M"])
        usleep(900_000)
        recv.child.kill(SIGKILL)
        let lost = sender.wait(seconds: 30)
        #expect(lost.status == 1)
        #expect(lost.stderr.contains(recv.address) && (lost.stderr.contains("lost") || lost.stderr.contains("reset")), "\(lost.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dst + "/big.bin"))

        let again = try FTReceiver(dir: dst, extra: ["--once"])
        let resume = try run(ftPath, ["send", again.address, src, "--json"])
        #expect(resume.status == 0, "\(resume.stderr)")
        _ = again.child.wait()
        expectSame(readFile(dst + "/big.bin"), bytes, "resumed file")
        let skipped = doneEvent(resume.stdout)?["bytes_skipped"] as? Int ?? 0
        #expect(skipped >= 16 << 20, "resumed from \(skipped) bytes")
    }

    @Test func fullDiskGivesAClearErrorAndNoTornFile() throws {
        try #require(getuid() == 0, "this test mounts a small tmpfs and needs root (CI runs as root)")
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let mnt = tmp.sub("small")
        let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt])
        try #require(mounted.status == 0, "mount tmpfs: \(mounted.stderr)")
        defer { _ = try? run("/bin/umount", ["-l", mnt]) }

        // A file bigger than the disk is refused before any byte lands.
        let big = tmp.sub("src") + "/big.bin"
        writeFile(big, patternBytes(12 << 20, seed: 5))
        var recv = try FTReceiver(dir: mnt, extra: ["--once"])
        let refused = try run(ftPath, ["send", recv.address, big])
        #expect(refused.status == 4)
        #expect(refused.stderr.contains("free") && refused.stderr.contains(mnt), "\(refused.stderr)")
        _ = recv.child.wait()
        #expect(listTree(mnt).isEmpty)

        // Without totals (a sender still walking its tree), each batch is
        // checked as it comes: the first fits, the second does not.
        recv = try FTReceiver(dir: mnt, extra: ["--once"])
        let p = try RawPeer(port: recv.port)
        batchesRaw(p, [Batch(batchID: 1, entries: [entry("fits", size: 1 << 20)]),
                       Batch(batchID: 2, entries: [entry("does-not", id: 2, size: 16 << 20)])])
        let replies = p.readUntilClosed()
        #expect(replies.contains { if case .answer(let a) = $0 { return a.batchID == 1 } else { return false } }, "\(replies)")
        let why = replies.compactMap(\.errorMessage).first ?? ""
        #expect(why.contains("does-not") || why.contains("free"), "\(replies)")
        _ = recv.child.wait()
        #expect(listTree(mnt).isEmpty, "\(listTree(mnt))")

        // A stream has no size to check: the disk fills mid-push.
        recv = try FTReceiver(dir: mnt, extra: ["--once"])
        let stream = try run(ftPath, ["send", recv.address, "-", "--name", "stream.bin"], stdinFile: big)
        #expect(stream.status == 4)
        #expect(stream.stderr.contains("ENOSPC") || stream.stderr.contains("No space left"), "\(stream.stderr)")
        let end = recv.child.wait()
        #expect(end.stdout.contains("No space left"), "\(end.stdout)")
        #expect(listTree(mnt).isEmpty, "\(listTree(mnt))")
    }

    @Test func connectionResetMidChunkEndsOnlyThatSession() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst)
        let p = try RawPeer(port: recv.port)
        _ = p.offer([fileEntry(Array("reset.bin".utf8), size: 1 << 20)])
        p.send(.data(DataHeader(fileID: 1, length: 1 << 20, offset: 0)))
        p.send([UInt8](repeating: 3, count: 100_000))
        // SO_LINGER 0: close sends a RST, not a FIN.
        p.reset()
        #expect(recv.child.waitForOutput("reset.bin"), "\(recv.child.stdoutSoFar)")
        let f = tmp.sub("src") + "/after.txt"
        writeFile(f, Array("fine\n".utf8))
        #expect(try run(ftPath, ["send", recv.address, f, "-q"]).status == 0)
        _ = recv.stop()
        #expect(!FileManager.default.fileExists(atPath: dst + "/reset.bin"))
        let errors = recv.events.filter { $0["event"] as? String == "error" }.compactMap { $0["message"] as? String }
        #expect(errors.contains { $0.contains("reset") || $0.contains("closed") }, "\(errors)")
    }

    @Test func aReceiverThatStopsReadingTimesTheSenderOut() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        // A fake receiver: completes the handshake, accepts, then never reads.
        let (listener, port) = loopbackListener()
        defer { close(listener) }
        let stall = Thread {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            var small: CInt = 4096
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<CInt>.size))
            sendBanner(fd)
            var buf = [UInt8](repeating: 0, count: 65_536)
            _ = recv(fd, &buf, buf.count, 0)  // hello
            let hello = FrameCodec.encode(.hello(Hello(role: .receiver, features: [.xxh3])))
            _ = hello.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            usleep(100_000)
            _ = recv(fd, &buf, buf.count, 0)  // push-info, the first batch
            let answer = FrameCodec.encode(.answer(BatchAnswer(batchID: 1)))
            _ = answer.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            sleep(10)
            close(fd)
        }
        stall.start()
        let f = tmp.sub("src") + "/f.bin"
        writeFile(f, patternBytes(32 << 20, seed: 9))
        let r = try run(ftPath, ["send", "127.0.0.1:\(port)", f, "--timeout", "2"], seconds: 30)
        #expect(r.status == 7)
        #expect(r.stderr.contains("127.0.0.1:\(port)") && (r.stderr.contains("timed out") || r.stderr.contains("EAGAIN")), "\(r.stderr)")
    }

    /// One session's peer stops mid-chunk and reads nothing more (its
    /// acknowledgements pile up unread); another push on the same receiver
    /// still completes, and the stalled one is still waiting after it.
    @Test func aStalledSessionDoesNotHoldAnother() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"))
        let stalled = try RawPeer(port: recv.port)
        var small = 4096
        setsockopt(stalled.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int>.size))
        // In tree order, as every push announces them.
        let files = (0..<2000).map { fileEntry(Array("s\(String(1_000_000 + $0).dropFirst())".utf8), id: UInt32($0 + 1), size: 0) }
            + [fileEntry(Array("z-big".utf8), id: 5000, size: 4 << 20)]
        guard case .answer? = stalled.offer(files) else {
            Issue.record("the stalled session's batch was not answered")
            return
        }
        let empty = Digest128(high: 0x99aa_06d3_0147_98d8, low: 0x6001_c324_468d_497f)  // xxh3-128 of nothing
        stalled.send(.smallFiles(SmallFiles(files: (0..<2000).map { SmallFiles.File(fileID: UInt32($0 + 1), digest: empty, bytes: []) })))
        stalled.send(.data(DataHeader(fileID: 5000, length: 4 << 20, offset: 0)))
        stalled.send([UInt8](repeating: 7, count: 1 << 20))
        // From here on the stalled peer neither sends nor reads.
        let f = tmp.sub("src") + "/other.bin"
        let bytes = patternBytes(3 << 20, seed: 4242)
        writeFile(f, bytes)
        let push = try run(ftPath, ["send", recv.address, f, "-q"], seconds: 60)
        #expect(push.status == 0, "\(push.stderr)")
        expectSame(readFile(tmp.path + "/dst/other.bin"), bytes, "the other push")
        #expect(!recv.events.contains { $0["event"] as? String == "error" }, "the stalled session was ended early: \(recv.events)")
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/dst/z-big"), "no torn file under the final name")
        stalled.hangUp()
        let end = recv.stop()
        #expect(end.status == 0)
    }

    @Test func aStalledSenderIsTimedOut() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--timeout", "2"])
        let p = try RawPeer(port: recv.port)
        _ = p.offer([fileEntry(Array("slow.bin".utf8), size: 10)])
        let gone = p.readUntilClosed()
        #expect(gone.compactMap(\.errorMessage).first?.contains("no progress") == true, "\(gone)")
        _ = recv.stop()
        #expect(listTree(tmp.path + "/dst").isEmpty)
    }
}

@Suite(.serialized) struct LoadTests {
    @Test func sixtyFourSendersAtOnceAllVerified() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst)
        var senders: [Child] = []
        for i in 0..<64 {
            let f = tmp.sub("src\(i)") + "/f\(i).bin"
            writeFile(f, patternBytes(256 * 1024 + i * 1000, seed: UInt64(1000 + i)))
            senders.append(try Child(ftPath, ["send", recv.address, f, "--json"]))
        }
        var digests = Set<String>()
        for (i, s) in senders.enumerated() {
            let r = s.wait(seconds: 120)
            #expect(r.status == 0, "sender \(i): \(r.stderr)")
            if let hashes = doneEvent(r.stdout)?["hashes"] as? [String: String], let h = hashes["f\(i).bin"] { digests.insert(h) }
        }
        _ = recv.stop()
        #expect(digests.count == 64, "every file verified with its own hash")
        for i in 0..<64 {
            expectSame(readFile(dst + "/f\(i).bin"), patternBytes(256 * 1024 + i * 1000, seed: UInt64(1000 + i)), "f\(i)")
        }
    }

    /// A small tree (`tree/a/b/f`, `tree/g`) pushed to `recv` with
    /// --timeout 4 lands whole in `dst`.
    static func expectATreeLandsMeanwhile(_ tmp: TempDir, _ recv: FTReceiver, _ dst: String, _ when: String,
                                          sourceLocation: SourceLocation = #_sourceLocation) throws {
        tmp.sub("src-meanwhile/tree/a/b")
        writeFile(tmp.path + "/src-meanwhile/tree/a/b/f", patternBytes(5000, seed: 98))
        writeFile(tmp.path + "/src-meanwhile/tree/g", patternBytes(70_000, seed: 99))
        let other = try run(ftPath, ["send", recv.address, tmp.path + "/src-meanwhile/tree", "--json", "--timeout", "4"])
        #expect(other.status == 0, "a push \(when): \(other.stderr)", sourceLocation: sourceLocation)
        expectSame(readFile(dst + "/tree/a/b/f"), patternBytes(5000, seed: 98), "tree/a/b/f", sourceLocation: sourceLocation)
        expectSame(readFile(dst + "/tree/g"), patternBytes(70_000, seed: 99), "tree/g", sourceLocation: sourceLocation)
    }

    /// A push whose offers take long to read (a held prefix or a
    /// --checksum compare of many gigabytes; slowed to 6 s here) holds up no
    /// other push: a tree pushed meanwhile with --timeout 4 still lands. Its
    /// directories are made on the ordered offload thread, where the
    /// offers were read before.
    @Test func aLongOfferReadStallsNoOtherPush() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let (src, bytes) = tmp.sourceFile(1 << 20, seed: 97)
        writeFile(dst + "/data.bin", bytes)
        let recv = try FTReceiver(dir: dst, environment: ["FT_TEST_OFFER_DELAY_MS": "6000"])
        let slow = try Child(ftPath, ["send", recv.address, src, "--checksum", "--json"])
        try #require(recv.child.waitForOutput("\"event\":\"start\"", seconds: 20), "the --checksum push did not start")
        try Self.expectATreeLandsMeanwhile(tmp, recv, dst, "during the slow offer")
        let done = slow.wait(seconds: 60)
        #expect(done.status == 0, "the --checksum push: \(done.stderr)")
        expectSame(readFile(dst + "/data.bin"), bytes, "data.bin")
        _ = recv.stop()
    }

    /// A `--delete` push whose prune takes long (a directory of millions
    /// of strays; slowed to 6 s here) holds up no other push: a tree pushed
    /// meanwhile with --timeout 4, into directories that already exist
    /// (each is swept for stale partials, which its end waits for), still
    /// lands. Prunes and sweeps of every session ran on the ordered offload
    /// thread, one after another.
    @Test func aLongPruneStallsNoOtherPush() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        tmp.sub("dst/kept")
        writeFile(dst + "/kept/stray", patternBytes(100, seed: 1))
        tmp.sub("src/kept")
        writeFile(tmp.path + "/src/kept/f", patternBytes(3000, seed: 2))
        tmp.sub("dst/tree/a")
        let recv = try FTReceiver(dir: dst, extra: ["--allow-delete"], environment: ["FT_TEST_PRUNE_DELAY_MS": "6000"])
        let pruning = try Child(ftPath, ["send", recv.address, tmp.path + "/src/kept", "--delete", "--json"])
        try #require(recv.child.waitForOutput("\"event\":\"start\"", seconds: 20), "the --delete push did not start")
        // Its directory's names are all announced at once: the prune is running.
        usleep(500_000)
        try Self.expectATreeLandsMeanwhile(tmp, recv, dst, "during the slow prune")
        let done = pruning.wait(seconds: 60)
        #expect(done.status == 0, "the --delete push: \(done.stderr)")
        #expect(listTree(dst + "/kept") == ["f"], "the prune did not run: \(listTree(dst + "/kept"))")
        _ = recv.stop()
    }

    /// A push whose directories take long to get their modes and mtimes
    /// (a disk busy with its journal; slowed to 6 s here) holds up no other
    /// push: a file pushed meanwhile with --timeout 4 lands, and the tree's
    /// directories still end with the source's metadata. That step ran on
    /// the loop, which it held for every session.
    @Test func slowDirectoryMetadataStallsNoOtherPush() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        tmp.sub("src/tree/a/b")
        writeFile(tmp.path + "/src/tree/a/b/f", patternBytes(5000, seed: 5))
        chmod(tmp.path + "/src/tree/a", 0o750)
        let recv = try FTReceiver(dir: dst, environment: ["FT_TEST_METADATA_DELAY_MS": "6000"])
        let slow = try Child(ftPath, ["send", recv.address, tmp.path + "/src/tree", "--json"])
        // Its one batch is acknowledged at once: its metadata is going on.
        try #require(recv.child.waitForOutput("\"event\":\"file-done\"", seconds: 20), "the tree push stored nothing")
        usleep(300_000)
        let (src, bytes) = tmp.sourceFile(70_000, seed: 6)
        let other = try run(ftPath, ["send", recv.address, src, "--json", "--timeout", "4"])
        #expect(other.status == 0, "a push during the slow metadata: \(other.stderr)")
        expectSame(readFile(dst + "/data.bin"), bytes, "data.bin")
        let done = slow.wait(seconds: 60)
        #expect(done.status == 0, "the tree push: \(done.stderr)")
        expectSame(readFile(dst + "/tree/a/b/f"), patternBytes(5000, seed: 5), "tree/a/b/f")
        var st = stat(), source = stat()
        #expect(stat(dst + "/tree/a", &st) == 0 && stat(tmp.path + "/src/tree/a", &source) == 0)
        #expect(st.st_mode & 0o7777 == 0o750, "tree/a has mode \(String(st.st_mode & 0o7777, radix: 8))")
        #expect(st.st_mtim.tv_sec == source.st_mtim.tv_sec && st.st_mtim.tv_nsec == source.st_mtim.tv_nsec, "tree/a lost its mtime")
        _ = recv.stop()
    }

    @Test func aChatRoomOfAHundredStaysResponsive() throws {
        let port = freePort()
        let room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        var peers: [LinePeer] = []
        for _ in 0..<100 {
            let p = try LinePeer(port: port)
            _ = p.line()
            peers.append(p)
        }
        // Every client speaks once; everyone hears every other client once.
        for (i, p) in peers.enumerated() { p.say("hello from \(i)") }
        for (i, p) in peers.enumerated() {
            var heard = Set<Int>()
            while heard.count < 99, let line = p.line() {
                if let r = line.range(of: ": hello from ") { heard.insert(Int(line[r.upperBound...]) ?? -1) }
            }
            #expect(heard.count == 99 && !heard.contains(i), "client \(i) heard \(heard.count)")
        }
        for p in peers { p.peer.hangUp() }
        room.kill(SIGINT)
        let end = room.wait(seconds: 20)
        #expect(jsonEvents(end.stdout).filter { $0["event"] as? String == "message" }.count == 100)
    }

    /// One host that opens connections without end gets its share of the
    /// seats; the rest are answered with one line and closed at once, so
    /// they hold no fds in the room, and a seat it gives up is taken again.
    @Test func oneHostCannotFillTheChatRoom() throws {
        try raiseOpenFiles(800)
        let port = freePort()
        let room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        var seated: [LinePeer] = []
        for _ in 0..<128 {
            let p = try LinePeer(port: port)
            _ = p.line()
            seated.append(p)
        }
        for k in 0..<500 {
            let p = try LinePeer(port: port)
            let answer = p.line() ?? ""
            if k == 0 { #expect(answer.contains("its share of the room"), "\(answer)") }
            #expect(p.line() == nil, "a turned-away connection was kept open")
            p.peer.close()
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(room.pid)/fd").count) ?? 0
        #expect(fds < 128 + 40, "\(fds) fds open in the room")
        seated[0].peer.hangUp()
        usleep(200_000)
        let again = try LinePeer(port: port)
        #expect(again.line()?.contains("you joined") == true)
        for p in seated { p.peer.hangUp() }
        room.kill(SIGINT)
        _ = room.wait(seconds: 20)
    }

    /// Pushes that passed the handshake and then sit idle cannot keep a
    /// full receiver full: while every slot is taken they go after the
    /// handshake's 10 s instead of --timeout.
    @Test func idlePushesDoNotKeepAFullReceiverFull() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--max-sessions", "2", "--timeout", "600"])
        let idle = try (0..<2).map { k in
            let p = try RawPeer(port: recv.port)
            _ = p.offer([fileEntry(Array("idle\(k).bin".utf8), size: 1 << 20)])
            return p
        }
        let f = tmp.sub("src") + "/real.bin"
        writeFile(f, patternBytes(100_000, seed: 3))
        let early = try run(ftPath, ["send", recv.address, f, "-q"])
        #expect(early.status == 4 && early.stderr.contains("its limit"), "\(early.stderr)")
        #expect(recv.child.waitForOutput("the receiver is full, so idle pushes go sooner", seconds: 20), "\(recv.child.stdoutSoFar)")
        // The slot frees once the timed-out session's close is done (it
        // waits up to 2 s for the peer to read its last frame).
        var later = try run(ftPath, ["send", recv.address, f, "-q"])
        for _ in 0..<10 where later.status != 0 {
            usleep(500_000)
            later = try run(ftPath, ["send", recv.address, f, "-q"])
        }
        #expect(later.status == 0, "\(later.stderr)")
        for p in idle { p.close() }
        _ = recv.stop()
    }
}
