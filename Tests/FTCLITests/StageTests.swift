import Foundation
import Testing
import FTTestSupport

/// A top directory new to the destination is built under a private name
/// (`.ft-stage-…`) and moved into place at the end of the push: real
/// `ft recv` and `ft send` processes, paced so that the middle of the push
/// can be looked at.
@Suite(.serialized) struct StageTests {
    /// 240 files of 16-20 KiB in 4 directories (about 4.4 MiB).
    static func tree(_ tmp: TempDir) -> String {
        let root = tmp.sub("src/top")
        for d in 0..<4 {
            tmp.sub("src/top/d\(d)")
            for f in 0..<60 { writeFile(root + "/d\(d)/f\(f)", patternBytes(16_384 + f * 64, seed: UInt64(d * 60 + f + 1))) }
        }
        return root
    }

    /// The stage directory in `dst`, once it holds at least `files` files.
    static func waitForStage(in dst: String, files: Int) -> String? {
        for _ in 0..<2000 {
            if let s = (try? FileManager.default.contentsOfDirectory(atPath: dst))?.first(where: { $0.hasPrefix(".ft-stage-") }),
               listTree(dst + "/" + s).filter({ !$0.hasSuffix("/") && $0.contains("/f") }).count >= files {
                return dst + "/" + s
            }
            usleep(5_000)
        }
        return nil
    }

    /// A push of `tree` paced at 2 MiB/s into `dst`, looked at once its
    /// stage holds `files` files.
    struct SlowPush {
        let tmp = TempDir()
        let root: String
        let dst: String
        let recv: FTReceiver
        let sender: Child
        let stage: String

        init(files: Int, once: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws {
            root = StageTests.tree(tmp)
            dst = tmp.sub("dst")
            recv = try FTReceiver(dir: dst, extra: once ? ["--once"] : [])
            sender = try Child(ftPath, ["send", recv.address, root, "-q", "--limit", "2M"])
            stage = try #require(StageTests.waitForStage(in: dst, files: files), "no stage appeared in \(listTree(dst).prefix(5))",
                                 sourceLocation: sourceLocation)
        }

        /// Kills the receiver (SIGKILL) and waits for both sides.
        func killReceiver() {
            recv.child.kill(SIGKILL)
            _ = recv.child.wait()
            _ = sender.wait()
        }
    }

    /// A push of `root` paced at 2 MiB/s to `recv`, once it resumes from
    /// the killed receiver's `stage` and writes new files past what that
    /// one left.
    static func resumeSlowly(_ root: String, to recv: FTReceiver, from stage: String,
                             sourceLocation: SourceLocation = #_sourceLocation) throws -> Child {
        let slow = try Child(ftPath, ["send", recv.address, root, "-q", "--limit", "2M"])
        var resumed = false
        for _ in 0..<2000 where !resumed {
            resumed = FileManager.default.fileExists(atPath: stage + "/" + ".ft-stage-old")
                && listTree(stage + "/top").filter { $0.contains("/f") }.count >= 5
            if !resumed { usleep(5_000) }
        }
        try #require(resumed, "the push did not resume from the stage: \(listTree(stage).prefix(5))", sourceLocation: sourceLocation)
        return slow
    }

    /// Kills `sender` (SIGKILL); whether, within 10 s, the receiver still
    /// serving has published the top and left no stage in `dst`.
    static func killedSenderLeavesOnlyTheTop(_ sender: Child, in dst: String) -> Bool {
        sender.kill(SIGKILL)
        _ = sender.wait()
        for _ in 0..<1000 {
            if FileManager.default.fileExists(atPath: dst + "/top") && stages(in: dst).isEmpty { return true }
            usleep(10_000)
        }
        return false
    }

    static func stages(in dst: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dst)) ?? []).filter { $0.hasPrefix(".ft-stage-") }
    }

    /// Every regular file under `dir` is the source's, byte for byte.
    static func expectWhole(_ dir: String, like root: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for rel in listTree(dir) {
            var st = stat()
            guard lstat(dir + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG,
                  !(rel as NSString).lastPathComponent.hasPrefix(".ft-") else { continue }
            if readFile(dir + "/" + rel) != readFile(root + "/" + rel) {
                Issue.record("\(what): \(rel) differs from the source", sourceLocation: sourceLocation)
                return
            }
        }
    }

    @Test func aNewTopDirectoryAppearsWholeAtTheEnd() throws {
        let push = try SlowPush(files: 20)
        defer { push.tmp.cleanup() }
        let (root, dst, recv, sender, stage) = (push.root, push.dst, push.recv, push.sender, push.stage)
        #expect(!FileManager.default.fileExists(atPath: dst + "/top"), "the top was under its final name mid-push")
        var st = stat()
        #expect(stat(stage, &st) == 0 && st.st_mode & 0o777 == 0o700, "the stage is private")
        let sent = sender.wait()
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(recv.child.wait().status == 0)
        #expect(listTree(dst + "/top") == listTree(root))
        Self.expectWhole(dst + "/top", like: root, "after the push")
        #expect(Self.stages(in: dst).isEmpty, "the stage was left behind")
    }

    /// A local user makes the top under its final name mid-push: it is
    /// never replaced or merged into; the push fails and says where what
    /// arrived is.
    @Test func aTopThatAppearsMeanwhileIsNotReplaced() throws {
        let push = try SlowPush(files: 10)
        defer { push.tmp.cleanup() }
        let (root, dst, recv, sender, stage) = (push.root, push.dst, push.recv, push.sender, push.stage)
        push.tmp.sub("dst/top")
        writeFile(dst + "/top/mine.txt", Array("the local user's\n".utf8))
        let sent = sender.wait()
        #expect(sent.status != 0, "the push succeeded over a top made meanwhile")
        #expect(sent.stderr.contains("appeared during the push"), "\(sent.stderr)")
        #expect(sent.stderr.contains(".ft-stage-"), "the message does not say where the files are: \(sent.stderr)")
        _ = recv.child.wait()
        #expect(listTree(dst + "/top") == ["mine.txt"], "the local user's top was written into")
        #expect(readFile(dst + "/top/mine.txt") == Array("the local user's\n".utf8))
        #expect(listTree(stage + "/top") == listTree(root), "what arrived is not all in the stage")
        Self.expectWhole(stage + "/top", like: root, "in the stage")
    }

    /// A receiver killed mid-push leaves nothing under the final name. The
    /// next push of the same top resumes from the stage it left: files
    /// there with their entry's size and mtime are kept (ft sets the mtime
    /// after the last byte), and nothing else of it is published: not a
    /// file cut short, nor one this push does not name.
    @Test func aKilledReceiversStageIsResumedFromAndNothingUnvouchedIsPublished() throws {
        let push = try SlowPush(files: 20)
        defer { push.tmp.cleanup() }
        let (root, dst, stage) = (push.root, push.dst, push.stage)
        push.killReceiver()
        #expect(!FileManager.default.fileExists(atPath: dst + "/top"), "a killed receiver left the top under its final name")
        // What a receiver killed while writing can leave beside whole files.
        let left = listTree(stage + "/top").filter { $0.contains("/f") }
        let cut = try #require(left.first, "nothing arrived before the kill")
        let whole = try #require(readFile(stage + "/top/" + cut))
        writeFile(stage + "/top/" + cut, Array(whole.prefix(whole.count / 2)))
        writeFile(stage + "/top/d0/not-in-this-push", patternBytes(5000, seed: 7))

        let again = try FTReceiver(dir: dst, extra: ["--once"])
        let resent = try run(ftPath, ["send", again.address, root, "--json"], seconds: 60)
        #expect(resent.status == 0, "\(resent.stderr)")
        #expect(again.child.wait().status == 0)
        let said = again.child.stdoutSoFar + again.child.stderrSoFar
        #expect(said.contains("resuming"), "the receiver did not say it resumed from the stage: \(said.suffix(600))")
        let done = try #require(doneEvent(resent.stdout))
        let kept = done["identical_files"] as? Int ?? 0
        #expect(kept >= left.count - 3 && kept < left.count, "kept \(kept) of the \(left.count) files the stage held, one of them cut short: \(done)")
        #expect(listTree(dst + "/top") == listTree(root), "the published top is not the source's")
        Self.expectWhole(dst + "/top", like: root, "after the second push")
        #expect(Self.stages(in: dst).isEmpty, "the stage was left behind: \(Self.stages(in: dst))")
    }

    /// Size and mtime only pick what a killed receiver's stage may keep:
    /// each candidate's content is compared with the sender's first. A
    /// file with its entry's size and mtime but other bytes (what a power
    /// loss can leave: blocks never written back read as zeros) is sent
    /// again, with `--checksum` or without; the others are kept.
    @Test(arguments: [[], ["--checksum"]])
    func aKilledReceiversFileIsKeptOnlyIfItsContentIsTheSenders(_ flags: [String]) throws {
        let push = try SlowPush(files: 20)
        defer { push.tmp.cleanup() }
        let (root, dst, stage) = (push.root, push.dst, push.stage)
        push.killReceiver()
        func mtime(_ path: String) -> timespec? {
            var st = stat()
            return stat(path, &st) == 0 ? st.st_mtim : nil
        }
        // Whole: ft sets a file's mtime after its last byte.
        let whole = listTree(stage + "/top").filter { rel in
            guard rel.contains("/f"), let a = mtime(stage + "/top/" + rel), let b = mtime(root + "/" + rel) else { return false }
            return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec
        }
        let zeroed = try #require(whole.first, "no whole file in the stage: \(listTree(stage).prefix(5))")
        let path = stage + "/top/" + zeroed
        let size = try #require(readFile(path)).count
        let was = try #require(mtime(path))
        writeFile(path, [UInt8](repeating: 0, count: size))
        let times = [was, was]
        try #require(utimensat(AT_FDCWD, path, times, 0) == 0)

        let again = try FTReceiver(dir: dst, extra: ["--once"])
        let resent = try run(ftPath, ["send", again.address, root, "--json"] + flags, seconds: 60)
        #expect(resent.status == 0, "\(resent.stderr)")
        #expect(again.child.wait().status == 0)
        let done = try #require(doneEvent(resent.stdout))
        #expect(done["identical_files"] as? Int == whole.count - 1,
                "of the \(whole.count) whole files in the stage, one zeroed, \(done["identical_files"] ?? "none") were kept")
        expectSame(readFile(dst + "/top/" + zeroed), readFile(root + "/" + zeroed), "the zeroed file, published")
        #expect(listTree(dst + "/top") == listTree(root), "the published top is not the source's")
        Self.expectWhole(dst + "/top", like: root, "after the second push")
        #expect(Self.stages(in: dst).isEmpty, "the stage was left behind: \(Self.stages(in: dst))")
    }

    /// A receiver killed again while it was resuming from a stage: the
    /// next push sets both leftovers aside, adopts from the newer, and
    /// publishes exactly the source.
    @Test func aStageLeftByTwoKilledReceiversIsStillResumedFrom() throws {
        let push = try SlowPush(files: 20)
        defer { push.tmp.cleanup() }
        let (root, dst, stage) = (push.root, push.dst, push.stage)
        push.killReceiver()

        let second = try FTReceiver(dir: dst, extra: ["--once"])
        let slow = try Self.resumeSlowly(root, to: second, from: stage)
        // Each store lane writes one file at a time: at most that many are cut short.
        let held = listTree(stage + "/top").filter { $0.contains("/f") }.count
        second.child.kill(SIGKILL)
        _ = second.child.wait()
        _ = slow.wait()

        let third = try FTReceiver(dir: dst, extra: ["--once"])
        let resent = try run(ftPath, ["send", third.address, root, "--json"], seconds: 60)
        #expect(resent.status == 0, "\(resent.stderr)")
        #expect(third.child.wait().status == 0)
        let done = try #require(doneEvent(resent.stdout))
        #expect((done["identical_files"] as? Int ?? 0) >= held - 3, "the third push kept too little of the \(held) files the new top held: \(done)")
        #expect(listTree(dst + "/top") == listTree(root), "the published top is not the source's")
        Self.expectWhole(dst + "/top", like: root, "after the third push")
        #expect(Self.stages(in: dst).isEmpty, "the stage was left behind: \(Self.stages(in: dst))")
    }

    /// A sender killed while its push resumes from a killed receiver's
    /// stage: the receiver (still serving) publishes what the push
    /// vouched for, and removes the rest of the stage with it: nothing of
    /// ft's is left in the destination, and the next push completes the
    /// tree. The stage's old top stayed for good before (the receiver said
    /// to remove it by hand).
    @Test func aPushCutOffWhileResumingFromAStageLeavesNothingBehind() throws {
        let push = try SlowPush(files: 20)
        defer { push.tmp.cleanup() }
        let (root, dst, stage) = (push.root, push.dst, push.stage)
        push.killReceiver()

        let recv = try FTReceiver(dir: dst)
        let slow = try Self.resumeSlowly(root, to: recv, from: stage)
        #expect(Self.killedSenderLeavesOnlyTheTop(slow, in: dst),
                "left in the destination: \(Self.stages(in: dst)), top published: \(FileManager.default.fileExists(atPath: dst + "/top"))")
        Self.expectWhole(dst + "/top", like: root, "published when the push was cut off")

        let resent = try run(ftPath, ["send", recv.address, root, "--json"], seconds: 60)
        #expect(resent.status == 0, "\(resent.stderr)")
        #expect(listTree(dst + "/top").filter { !($0 as NSString).lastPathComponent.hasPrefix(".ft-") } == listTree(root))
        Self.expectWhole(dst + "/top", like: root, "after the next push")
        _ = recv.stop()
    }

    /// A big file half received inside the stage of a killed receiver:
    /// the next push takes its part from the old top and sends only the
    /// rest.
    @Test func aBigFileCutOffInAKilledReceiversStageResumes() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/top")
        tmp.sub("src/top/sub")
        let size = 48 << 20
        let bytes = patternBytes(size, seed: 31)
        writeFile(root + "/sub/big.bin", bytes)
        writeFile(root + "/note.txt", Array("beside it\n".utf8))
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let sender = try Child(ftPath, ["send", recv.address, root, "-q", "--limit", "32M"])
        usleep(900_000)
        recv.child.kill(SIGKILL)
        _ = recv.child.wait()
        _ = sender.wait()
        #expect(!FileManager.default.fileExists(atPath: dst + "/top"))

        let again = try FTReceiver(dir: dst, extra: ["--once"])
        let resumed = try run(ftPath, ["send", again.address, root, "--json"], seconds: 60)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(again.child.wait().status == 0)
        expectSame(readFile(dst + "/top/sub/big.bin"), bytes, "the resumed file")
        let skipped = doneEvent(resumed.stdout)?["bytes_skipped"] as? Int ?? 0
        #expect(skipped >= 16 << 20, "resumed from \(skipped) bytes")
        #expect(listTree(dst + "/top").filter { !($0 as NSString).lastPathComponent.hasPrefix(".ft-") } == listTree(root))
        #expect(Self.stages(in: dst).isEmpty, "the stage was left behind: \(Self.stages(in: dst))")
    }

    /// A sender killed mid-push: the receiver (still serving) moves what
    /// arrived into place, all of it verified, and a second push finds it.
    @Test func aKilledSendersFilesArePublishedForTheNextPush() throws {
        let push = try SlowPush(files: 20, once: false)
        defer { push.tmp.cleanup() }
        let (root, dst, recv, sender) = (push.root, push.dst, push.recv, push.sender)
        #expect(Self.killedSenderLeavesOnlyTheTop(sender, in: dst), "what arrived was not moved into place: \(listTree(dst).prefix(5))")
        Self.expectWhole(dst + "/top", like: root, "after the kill")
        let resent = try run(ftPath, ["send", recv.address, root, "--json"], seconds: 60)
        #expect(resent.status == 0, "\(resent.stderr)")
        let done = try #require(doneEvent(resent.stdout))
        #expect((done["identical_files"] as? Int ?? 0) >= 20, "the second push did not find what arrived: \(done)")
        #expect(listTree(dst + "/top").filter { !($0 as NSString).lastPathComponent.hasPrefix(".ft-") } == listTree(root))
        Self.expectWhole(dst + "/top", like: root, "after the second push")
        _ = recv.stop()
    }
}
