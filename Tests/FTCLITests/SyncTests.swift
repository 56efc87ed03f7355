import Foundation
import Testing
import FTTestSupport
import FTTransfer
import FTWire

/// Re-pushing what changed: identical files skipped, changed big files
/// patched by chunk, content checks with --checksum.
@Suite(.serialized) struct SyncTests {
    static let mib = 1 << 20

    func push(_ dst: String, _ paths: [String], recv: [String] = [], send: [String] = []) throws -> [String: Any] {
        try pushWithCLI(dst, paths, recv: recv, send: send)
    }

    static func inode(_ path: String) -> stat {
        var st = stat()
        lstat(path, &st)
        return st
    }

    @Test func anUnchangedTreeSendsNothingAndChangesNothing() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/t")
        tmp.sub("src/t/sub")
        for f in 0..<30 { writeFile(root + "/sub/f\(f)", patternBytes(500 * f + 1, seed: UInt64(f + 1))) }
        writeFile(root + "/big", patternBytes(3 * Self.mib, seed: 77))
        let dst = tmp.sub("dst")
        _ = try push(dst, [root])
        let before = listTree(dst).map { ($0, Self.inode(dst + "/" + $0)) }
        let done = try push(dst, [root], recv: ["--overwrite"], send: ["--sync"])
        #expect(done["bytes_sent"] as? Int == 0, "\(done)")
        #expect(done["identical_files"] as? Int == 31, "\(done)")
        for (rel, st) in before {
            let now = Self.inode(dst + "/" + rel)
            #expect(now.st_ino == st.st_ino && now.st_mtim.tv_sec == st.st_mtim.tv_sec && now.st_mtim.tv_nsec == st.st_mtim.tv_nsec,
                    "\(rel) was touched")
        }
    }

    /// On every sender path: the copy paths hash in the buffer they send
    /// from, which sees only the changed chunks, so a patched file is
    /// hashed whole by the helper instead.
    @Test(arguments: ["auto", "sendfile", "copy", "zc"]) func changedBigFilesArePatchedByChunk(io: String) throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src")
        let original = patternBytes(24 * Self.mib, seed: 5)
        writeFile(src + "/middle", original)
        writeFile(src + "/grows", original)
        writeFile(src + "/shrinks", original)
        let dst = tmp.sub("dst")
        _ = try push(dst, [src + "/middle", src + "/grows", src + "/shrinks"])

        var middle = original
        for i in (12 * Self.mib)..<(12 * Self.mib + 300_000) { middle[i] ^= 0x5A }
        writeFile(src + "/middle", middle)
        writeFile(src + "/grows", original + patternBytes(3 * Self.mib + 17, seed: 6))
        writeFile(src + "/shrinks", Array(original[..<(20 * Self.mib + 5)]))

        let done = try push(dst, [src + "/middle", src + "/grows", src + "/shrinks"], recv: ["--overwrite"], send: ["--sync", "--io", io])
        for name in ["middle", "grows", "shrinks"] {
            expectSame(readFile(dst + "/" + name), readFile(src + "/" + name), name)
        }
        #expect(done["patched_files"] as? Int == 3, "\(done)")
        // One changed MiB in the middle, four new in the grown file (the old
        // last chunk plus what was added), one partial chunk in the shrunk one.
        let sent = done["bytes_sent"] as? Int ?? .max
        #expect(sent <= 8 * Self.mib, "\(sent) bytes sent")
        #expect(listTree(dst) == ["grows", "middle", "shrinks"], "partials left: \(listTree(dst))")
    }

    @Test func withoutPermissionAChangedFileIsRefusedAndKept() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src")
        writeFile(src + "/f", patternBytes(2 * Self.mib, seed: 1))
        let dst = tmp.sub("dst")
        _ = try push(dst, [src + "/f"])
        writeFile(src + "/f", patternBytes(2 * Self.mib, seed: 2))
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, src + "/f", "--sync"])
        #expect(send.status == 4)
        #expect(send.stderr.contains("--overwrite"), "\(send.stderr)")
        _ = recv.child.wait()
        expectSame(readFile(dst + "/f"), patternBytes(2 * Self.mib, seed: 1), "kept")
    }

    @Test func checksumSkipsSameContentWithANewMtime() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src")
        let bytes = patternBytes(200_000, seed: 3)
        writeFile(src + "/same", bytes)
        let dst = tmp.sub("dst")
        _ = try push(dst, [src + "/same"])
        var t = [timespec(tv_sec: 1_700_000_000, tv_nsec: 0), timespec(tv_sec: 1_700_000_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, src + "/same", &t, 0)
        // By size and mtime it changed: sent again (whole, it is small).
        var done = try push(dst, [src + "/same"], recv: ["--overwrite"], send: ["--sync"])
        #expect(done["bytes_sent"] as? Int == bytes.count, "\(done)")
        utimensat(AT_FDCWD, src + "/same", [timespec(tv_sec: 1_600_000_000, tv_nsec: 0), timespec(tv_sec: 1_600_000_000, tv_nsec: 0)], 0)
        // By content it did not: skipped, even without --overwrite.
        done = try push(dst, [src + "/same"], send: ["--checksum"])
        #expect(done["bytes_sent"] as? Int == 0, "\(done)")
        #expect(done["identical_files"] as? Int == 1, "\(done)")
        expectSame(readFile(dst + "/same"), bytes)
        // Different content, same size: refused without --overwrite.
        writeFile(src + "/same", patternBytes(200_000, seed: 4))
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, src + "/same", "--checksum"])
        #expect(send.status == 4, "\(send.stderr)")
        _ = recv.child.wait()
        expectSame(readFile(dst + "/same"), bytes, "kept")
    }

    /// A sender that claims chunks match when they do not cannot make the
    /// receiver keep a wrong file: the whole file is verified.
    @Test func lyingAboutChunksFailsVerification() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let old = patternBytes(2 * Self.mib, seed: 8)
        writeFile(dst + "/victim", old)
        let recv = try FTReceiver(dir: dst, extra: ["--once", "--overwrite"])
        let p = try RawPeer(port: recv.port)
        let e = fileEntry(Array("victim".utf8), size: UInt64(old.count))
        guard case .answer(let a)? = p.offer([e], flags: [.sync]) else {
            Issue.record("no answer")
            return
        }
        guard case .chunks(_, let digests)? = a.items.first?.offer else {
            Issue.record("no chunk offer: \(a)")
            return
        }
        p.send(.plan(BatchPlan(batchID: 1, items: [BatchPlan.Item(fileID: 1, decision: .patch(reuse: digests.map { _ in true }))])))
        p.send(.fileEnd(FileEnd(fileID: 1, size: UInt64(old.count), digest: Digest128(high: 1, low: 2))))
        let message = p.readUntilClosed().compactMap(\.errorMessage).first ?? ""
        #expect(message.contains("failed verification"), "\(message)")
        _ = recv.child.wait()
        expectSame(readFile(dst + "/victim"), old, "the receiver's copy")
        #expect(listTree(dst) == ["victim"], "\(listTree(dst))")
    }

    @Test func excludedEntriesStayHome() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/proj")
        tmp.sub("src/proj/build/obj")
        tmp.sub("src/proj/src/cache")
        writeFile(root + "/build/obj/a.o", [1])
        writeFile(root + "/src/main.c", [2])
        writeFile(root + "/src/main.o", [3])
        writeFile(root + "/src/util.o", [4])
        writeFile(root + "/src/cache/x", [5])
        writeFile(root + "/notes.log", [6])
        writeFile(tmp.path + "/patterns", Array("# from a file\n*.log\n".utf8))
        let dst = tmp.sub("dst")
        let done = try push(dst, [root], send: ["--exclude", "/build", "--exclude", "*.o", "--exclude", "**/cache/",
                                                "--include", "main.o", "--exclude-from", tmp.path + "/patterns"])
        #expect(listTree(dst + "/proj") == ["src", "src/main.c", "src/main.o"], "\(listTree(dst + "/proj"))")
        #expect((done["skipped"] as? [String: Int])?["excluded"] == 4, "\(done)")
        let bad = try run(ftPath, ["send", "127.0.0.1:1", root, "--exclude", "[oops"])
        #expect(bad.status == 2 && bad.stderr.contains("[oops"), "\(bad.stderr)")
    }
}
