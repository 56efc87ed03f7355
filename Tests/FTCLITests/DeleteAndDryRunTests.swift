import Foundation
import Testing
import FTTestSupport

/// `--delete` removes what a pushed directory no longer holds, and nothing
/// else; `--dry-run` says what a push would do and writes nothing.
@Suite(.serialized) struct DeleteAndDryRunTests {
    func push(_ dst: String, _ paths: [String], recv: [String] = [], send: [String] = []) throws -> [String: Any] {
        try pushWithCLI(dst, paths, recv: recv, send: send)
    }

    /// Every entry under `dir` with its inode and mtime, links not followed.
    static func snapshot(_ dir: String) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for rel in listTree(dir) {
            var st = stat()
            lstat(dir + "/" + rel, &st)
            out[rel] = [Int(st.st_ino), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec), Int(st.st_size)]
        }
        return out
    }

    /// A tree pushed once, then changed at both ends: the source lost a file,
    /// the destination gained strays, a part file, and a symlink planted to
    /// a directory outside.
    struct Scene {
        let tmp = TempDir()
        var root: String { tmp.path + "/src/t" }
        var dst: String { tmp.path + "/dst" }
        var outside: String { tmp.path + "/outside" }

        init(_ test: DeleteAndDryRunTests) throws {
            tmp.sub("src/t/sub")
            writeFile(root + "/a", patternBytes(3000, seed: 1))
            writeFile(root + "/sub/b", patternBytes(4000, seed: 2))
            tmp.sub("dst")
            _ = try test.push(dst, [root])
            unlink(root + "/sub/b")
            writeFile(dst + "/t/extra", [1, 2, 3])
            tmp.sub("dst/t/olddir/deeper")
            writeFile(dst + "/t/olddir/deeper/x", [4])
            writeFile(dst + "/t/.ft-resumable.part", [5])
            writeFile(dst + "/beside", [6])
            tmp.sub("outside")
            writeFile(outside + "/precious", [7])
            symlink(outside, dst + "/t/link")
        }
    }

    @Test func deleteRemovesOnlyWhatAPushedDirectoryNoLongerHolds() throws {
        let s = try Scene(self)
        defer { s.tmp.cleanup() }
        let done = try push(s.dst, [s.root], recv: ["--allow-delete"], send: ["--delete"])
        #expect(listTree(s.dst + "/t") == [".ft-resumable.part", "a", "sub"], "\(listTree(s.dst + "/t"))")
        // sub/b, extra, olddir, olddir/deeper, olddir/deeper/x, link.
        #expect(done["deleted"] as? Int == 6, "\(done)")
        #expect(readFile(s.dst + "/beside") == [6], "outside the pushed directory")
        #expect(readFile(s.outside + "/precious") == [7], "the link was followed")
        expectSame(readFile(s.dst + "/t/a"), patternBytes(3000, seed: 1))
    }

    /// An existing directory that has the source's mode and mtime (as a
    /// finished or cut-off push leaves it) gets them again once complete.
    /// Its prune of many strays is still running when its batch is
    /// acknowledged; the removals must not move that mtime afterwards.
    @Test func aPrunedDirectoryEndsWithTheSourcesMtime() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src/t"), dst = tmp.path + "/dst"
        tmp.sub("src/t/d")
        tmp.sub("src/t/z")
        writeFile(src + "/d/a", patternBytes(3000, seed: 1))
        writeFile(src + "/z/c", patternBytes(3000, seed: 2))
        let there = tmp.sub("dst/t/d")
        for i in 0..<20_000 { writeFile(there + "/stray\(i)", []) }
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789)]
        for d in [src + "/d", there] {
            chmod(d, 0o750)
            #expect(utimensat(AT_FDCWD, d, &times, 0) == 0)
        }
        let done = try push(dst, [src], recv: ["--allow-delete"], send: ["--delete"])
        #expect(done["deleted"] as? Int == 20_000, "\(done)")
        #expect(listTree(there) == ["a"])
        expectSame(readFile(there + "/a"), patternBytes(3000, seed: 1))
        var st = stat()
        #expect(stat(there, &st) == 0)
        #expect(st.st_mtim.tv_sec == 1_600_000_000 && st.st_mtim.tv_nsec == 123_456_789,
                "mtime \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)")
        #expect(st.st_mode & 0o7777 == 0o750)
    }

    @Test func deleteWithoutTheReceiversPermissionIsRefused() throws {
        let s = try Scene(self)
        defer { s.tmp.cleanup() }
        let before = Self.snapshot(s.dst)
        let recv = try FTReceiver(dir: s.dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, s.root, "--delete"])
        #expect(send.status == 4, "\(send.stderr)")
        #expect(send.stderr.contains("--allow-delete"), "\(send.stderr)")
        _ = recv.child.wait()
        #expect(Self.snapshot(s.dst) == before)
        let excluded = try run(ftPath, ["send", recv.address, s.root, "--delete", "--exclude", "*.o"])
        #expect(excluded.status == 2 && excluded.stderr.contains("--exclude"), "\(excluded.stderr)")
    }

    @Test func aDryRunWritesNothingAndCountsWhatWouldHappen() throws {
        let s = try Scene(self)
        defer { s.tmp.cleanup() }
        writeFile(s.root + "/new", patternBytes(5000, seed: 3))
        let before = Self.snapshot(s.dst)
        let done = try push(s.dst, [s.root], recv: ["--allow-delete"], send: ["--delete", "-n"])
        #expect(done["dry_run"] as? Bool == true, "\(done)")
        #expect(done["files"] as? Int == 1 && done["bytes_sent"] as? Int == 5000, "\(done)")
        #expect(done["identical_files"] as? Int == 1, "\(done)")
        #expect(done["deleted"] as? Int == 6, "\(done)")
        #expect(Self.snapshot(s.dst) == before, "a dry run changed the destination")

        // Into an empty destination: nothing is made, not even directories.
        let empty = s.tmp.sub("empty")
        let text = try {
            let recv = try FTReceiver(dir: empty, extra: ["--once"])
            let send = try run(ftPath, ["send", recv.address, s.root, "--dry-run"])
            #expect(recv.child.wait().status == 0)
            return send
        }()
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stderr.contains("would send 2 files"), "\(text.stderr)")
        #expect(text.stderr.contains("nothing was written"), "\(text.stderr)")
        #expect(listTree(empty) == [], "\(listTree(empty))")
    }
}
