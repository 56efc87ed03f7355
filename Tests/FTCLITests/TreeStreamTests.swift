import Foundation
import Testing
import FTTestSupport
import FTWire

/// Trees as a stream of batches, through the real binaries on loopback.
@Suite(.serialized) struct TreeStreamTests {
    /// 20,000 files need at least five batches (a batch holds at most
    /// 4,096 entries): every rule and every byte must hold across them.
    @Test func twentyThousandFilesArriveIdenticalAcrossBatches() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/big tree")
        let names = ["plain", "ünïcødé", "中文", "emoji 🙂", "spaces and 'quotes'"]
        var count = 0
        for d in 0..<40 {
            let dir = root + "/\(names[d % names.count]) \(d)" + (d % 3 == 0 ? "/nested/deeper" : "")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in 0..<500 {
                let path = dir + "/\(f) \(names[f % names.count]).dat"
                writeFile(path, patternBytes((f * 37 + d) % 3000, seed: UInt64(d * 1000 + f + 1)))
                chmod(path, [0o644, 0o600, 0o755, 0o640][f % 4])
                var t = [timespec(tv_sec: 1_500_000_000 + d * 1000 + f, tv_nsec: f * 1_000_001 % 1_000_000_000),
                         timespec(tv_sec: 1_500_000_000 + d * 1000 + f, tv_nsec: f * 1_000_001 % 1_000_000_000)]
                utimensat(AT_FDCWD, path, &t, 0)
                count += 1
            }
        }
        for e in 0..<30 { tmp.sub("src/big tree/empty \(e)/inner") }
        chmod(root + "/plain 0", 0o750)
        #expect(count == 20_000)

        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, root, "--json"], seconds: 300)
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait(seconds: 120).status == 0)
        let done = try #require(doneEvent(send.stdout))
        #expect(done["files"] as? Int == 20_000, "\(done)")

        let tree = listTree(root)
        #expect(listTree(dst + "/big tree") == tree)
        var mismatches: [String] = []
        for rel in tree {
            var a = stat(), b = stat()
            lstat(root + "/" + rel, &a)
            guard lstat(dst + "/big tree/" + rel, &b) == 0 else {
                mismatches.append("\(rel): missing")
                continue
            }
            if a.st_mode != b.st_mode { mismatches.append("\(rel): mode \(String(a.st_mode, radix: 8)) vs \(String(b.st_mode, radix: 8))") }
            guard a.st_mode & S_IFMT == S_IFREG else { continue }
            if a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec { mismatches.append("\(rel): mtime") }
            if readFile(root + "/" + rel) != readFile(dst + "/big tree/" + rel) { mismatches.append("\(rel): content") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) differences, first: \(mismatches.prefix(5))")
    }

    /// Small files not in the page cache are read on the ring, many at
    /// once, into the frames' staging (`SmallReads`): they arrive byte for
    /// byte, empty and 64 KiB files among them, beside others still cached.
    @Test func smallFilesOutOfThePageCacheArriveIdentical() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/cold")
        var paths: [String] = []
        for d in 0..<4 {
            let dir = tmp.sub("src/cold/d\(d)")
            for f in 0..<150 {
                let size = [0, 1, 4095, 4096, 4097, 65_536][f % 6] + (f % 6 == 0 ? 0 : f)
                let path = dir + "/f\(f)"
                writePlainly(path, patternBytes(min(size, 65_536), seed: UInt64(d * 1000 + f + 7)))
                paths.append(path)
            }
        }
        // Out of the page cache: written back, then dropped (every other
        // file, so both ways of reading meet in one frame). A page the
        // kernel is still finishing with stays; it is asked again.
        sync()
        var warm = paths.enumerated().filter { $0.offset % 2 == 0 && $0.offset % 6 != 0 }.map(\.element)  // not the empty ones
        let wanted = warm.count
        for _ in 0..<50 where !warm.isEmpty {
            for p in warm {
                let fd = open(p, O_RDONLY)
                posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
                close(fd)
            }
            warm = warm.filter(inPageCache)
            if !warm.isEmpty { usleep(20_000) }
        }
        try #require(warm.count < wanted, "no file left the page cache: this test needs /tmp on a disk filesystem (on tmpfs nothing ever leaves it)")

        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, root, "-v"], seconds: 120)
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait(seconds: 60).status == 0)
        #expect(send.stderr.contains("small files were not in the page cache: read on the ring"), "the ring reads did not run: \(send.stderr)")
        #expect(listTree(dst + "/cold") == listTree(root))
        let differing = paths.filter { readFile($0) != readFile(dst + "/cold/" + $0.dropFirst(root.count + 1)) }
        #expect(differing.isEmpty, "\(differing.count) files differ, first: \(differing.prefix(3))")
    }

    /// Whether any page of `path` is in the page cache (mincore on a
    /// mapping, which reads nothing in).
    private func inPageCache(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0, let map = mmap(nil, Int(st.st_size), PROT_READ, MAP_SHARED, fd, 0),
              map != MAP_FAILED else { return false }
        defer { munmap(map, Int(st.st_size)) }
        let pages = (Int(st.st_size) + 4095) / 4096
        var resident = [UInt8](repeating: 0, count: pages)
        guard mincore(map, Int(st.st_size), &resident) == 0 else { return true }
        return resident.contains { $0 & 1 != 0 }
    }

    /// write(2) into a new file. (Written through FileManager, pages stay
    /// in the cache past POSIX_FADV_DONTNEED here.)
    private func writePlainly(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "create \(path): errno \(errno)")
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// A push cut off anywhere in a tree leaves only verified files under
    /// final names; pushed again, it skips what arrived and completes, and
    /// its directories have the source's modes (not the 0700 they were
    /// made with: the second push finds them existing) and mtimes (not
    /// those of the second push's writes into them).
    @Test func aSenderKilledMidTreeResumesAndSkipsWhatArrived() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/t")
        for d in 0..<10 {
            tmp.sub("src/t/d\(d)")
            for f in 0..<300 { writeFile(root + "/d\(d)/f\(f)", patternBytes(8192 + f, seed: UInt64(d * 300 + f + 1))) }
            chmod(root + "/d\(d)", d % 2 == 0 ? 0o750 : 0o705)
        }
        chmod(root, 0o751)
        writeFile(root + "/d5/big.bin", patternBytes(6 << 20, seed: 99))
        let dirs = [""] + (0..<10).map { "/d\($0)" }
        for (i, d) in dirs.enumerated() {
            let t = timespec(tv_sec: 1_000_000_000 + i * 3600, tv_nsec: 123_456_789)
            var times = [t, t]
            #expect(utimensat(AT_FDCWD, root + d, &times, 0) == 0)
        }
        func mode(_ path: String) -> mode_t {
            var st = stat()
            return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : 0
        }
        func mtime(_ path: String) -> String {
            var st = stat()
            return lstat(path, &st) == 0 ? "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" : "none"
        }
        let dst = tmp.sub("dst")
        var resumedIdentical = 0
        for round in 1...3 {
            // About 31 MiB paced at 24 MiB/s: the kill lands mid-tree.
            try pushKilledMidway(into: dst, [root], limit: "24M", pauseMicroseconds: 200_000...900_000)
            // Whatever is under a final name is whole and right.
            var torn: [String] = []
            for rel in listTree(dst + "/t") {
                var st = stat()
                guard lstat(dst + "/t/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
                if (rel as NSString).lastPathComponent.hasPrefix(".ft-") { continue }
                if readFile(dst + "/t/" + rel) != readFile(root + "/" + rel) { torn.append(rel) }
            }
            #expect(torn.isEmpty, "round \(round): files under final names differ from the source: \(torn.prefix(5))")

            let again = try FTReceiver(dir: dst, extra: ["--once"])
            let resume = try run(ftPath, ["send", again.address, root, "--json"], seconds: 120)
            #expect(resume.status == 0, "round \(round): \(resume.stderr)")
            #expect(again.child.wait().status == 0)
            let done = try #require(doneEvent(resume.stdout), "round \(round)")
            if (done["identical_files"] as? Int ?? 0) > 0 { resumedIdentical += 1 }
            let visible = listTree(dst + "/t").filter { !($0 as NSString).lastPathComponent.hasPrefix(".ft-") }
            #expect(visible == listTree(root), "round \(round)")
            #expect(listTree(dst + "/t").count == visible.count, "round \(round): partials left behind")
            let modes = dirs.filter { mode(dst + "/t" + $0) != mode(root + $0) }
            #expect(modes.isEmpty, "round \(round): directory modes differ from the source's: \(modes.map { "t\($0) \(String(mode(dst + "/t" + $0), radix: 8))" })")
            let mtimes = dirs.filter { mtime(dst + "/t" + $0) != mtime(root + $0) }
            #expect(mtimes.isEmpty, "round \(round): directory mtimes differ from the source's: \(mtimes.map { "t\($0) \(mtime(dst + "/t" + $0))" })")
            for rel in listTree(root) where !rel.hasSuffix("/") {
                var st = stat()
                if lstat(root + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG {
                    if readFile(root + "/" + rel) != readFile(dst + "/t/" + rel) {
                        Issue.record("round \(round): \(rel) differs after the second push")
                        break
                    }
                }
            }
            try FileManager.default.removeItem(atPath: dst + "/t")
        }
        #expect(resumedIdentical >= 2, "only \(resumedIdentical) of 3 second pushes found files already there")
    }

    /// A directory that was there before the push keeps its own mode and
    /// mtime, even with the source's mtime (what a cut-off push leaves
    /// has the source's mode as well: only that is set back).
    @Test func anExistingDirectoryKeepsItsOwnMetadata() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/t")
        let dst = tmp.sub("dst")
        for d in ["older", "sametime"] {
            tmp.sub("src/t/" + d)
            writeFile(root + "/\(d)/f", patternBytes(100, seed: 1))
            chmod(root + "/" + d, 0o711)
            tmp.sub("dst/t/" + d)
            chmod(dst + "/t/" + d, 0o755)
        }
        func setMtime(_ path: String, _ seconds: Int) {
            let t = timespec(tv_sec: seconds, tv_nsec: 5)
            var times = [t, t]
            #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        }
        setMtime(root + "/older", 1_100_000_000)
        setMtime(root + "/sametime", 1_200_000_000)
        setMtime(dst + "/t/older", 1_000_000_000)
        setMtime(dst + "/t/sametime", 1_200_000_000)
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, root])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)
        for d in ["older", "sametime"] {
            var st = stat()
            #expect(lstat(dst + "/t/" + d, &st) == 0)
            #expect(st.st_mode & 0o7777 == 0o755, "t/\(d) took the source's mode")
            #expect(st.st_mtim.tv_sec > 1_300_000_000, "t/\(d) took an mtime it did not have (\(st.st_mtim.tv_sec)); the push wrote into it")
            expectSame(readFile(dst + "/t/\(d)/f"), readFile(root + "/\(d)/f"), "t/\(d)/f")
        }
    }

    /// Pushing the same tree twice sends nothing the second time.
    @Test func aTreePushedAgainIsSkippedAsIdentical() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/again")
        tmp.sub("src/again/sub")
        for f in 0..<50 { writeFile(root + "/sub/f\(f)", patternBytes(1000 + f, seed: UInt64(f + 1))) }
        symlink("sub/f1", root + "/link")
        link(root + "/sub/f2", root + "/hard")
        let dst = tmp.sub("dst")
        for push in 1...2 {
            let recv = try FTReceiver(dir: dst, extra: ["--once"])
            let send = try run(ftPath, ["send", recv.address, root, "--json"])
            #expect(send.status == 0, "push \(push): \(send.stderr)")
            #expect(recv.child.wait().status == 0)
            let done = try #require(doneEvent(send.stdout))
            if push == 2 {
                #expect(done["bytes_sent"] as? Int == 0, "\(done)")
                #expect(done["identical_files"] as? Int == 50, "\(done)")
            }
        }
        // A changed file (new mtime) is not identical: without --overwrite
        // it is refused, never silently kept or replaced.
        writeFile(root + "/sub/f3", Array("changed".utf8))
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, root])
        #expect(send.status == 4)
        #expect(send.stderr.contains("again/sub/f3") && send.stderr.contains("exists"), "\(send.stderr)")
        _ = recv.child.wait()
        expectSame(readFile(dst + "/again/sub/f3"), patternBytes(1003, seed: 4), "the receiver's copy")
    }
}
