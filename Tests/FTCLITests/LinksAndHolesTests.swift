import Foundation
import Testing
import FTTestSupport
import FTWire

/// Symlinks, hard links, sparse files and specials, pushed through the
/// real binaries and compared with the tools people trust (diff, stat, du).
@Suite(.serialized) struct LinksAndHolesTests {
    static let mib = 1 << 20

    /// The fixture the issue names. Returns the tree's root.
    static func fixture(_ tmp: TempDir) -> String {
        let root = tmp.sub("src/fx")
        tmp.sub("src/fx/sub/deeper")
        tmp.sub("src/fx/other")
        tmp.sub("src/outside")
        writeFile(root + "/sub/file", Array("the file\n".utf8))
        symlink("sub/file", root + "/rel")
        symlink("/etc/hostname", root + "/abs")
        symlink("../../outside", root + "/sub/escape")
        symlink("nothing-here", root + "/dangling")
        symlink("chain2", root + "/chain1")
        symlink("sub/file", root + "/chain2")
        symlink("sub", root + "/dirlink")
        symlink("../file", root + "/sub/deeper/up")
        writeFile(root + "/h1", patternBytes(100_000, seed: 3))
        link(root + "/h1", root + "/sub/h2")
        link(root + "/h1", root + "/other/h3")
        // Holes at the start, in the middle, at the end.
        sparse(root + "/hole-start", size: 4 * mib, data: [(3 * mib, 4096)])
        sparse(root + "/hole-middle", size: 4 * mib, data: [(0, 4096), (3 * mib, 4096)])
        sparse(root + "/hole-end", size: 4 * mib, data: [(0, 8192)])
        mkfifo(root + "/fifo", 0o644)
        return root
    }

    static func sparse(_ path: String, size: Int, data: [(Int, Int)]) {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        defer { close(fd) }
        for (offset, length) in data {
            let bytes = patternBytes(length, seed: UInt64(offset + 1))
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, length, off_t(offset)) }
        }
        ftruncate(fd, off_t(size))
    }

    static func blocks(_ path: String) -> Int {
        var st = stat()
        lstat(path, &st)
        return Int(st.st_blocks) * 512
    }

    static func inode(_ path: String) -> (ino: UInt, links: UInt) {
        var st = stat()
        lstat(path, &st)
        return (UInt(st.st_ino), UInt(st.st_nlink))
    }

    /// `diff -r --no-dereference` output lines, sorted.
    static func differences(_ a: String, _ b: String) throws -> [String] {
        let d = try run("/usr/bin/diff", ["-r", "--no-dereference", a, b])
        return d.stdoutLines.sorted()
    }

    @Test func fixtureArrivesWithLinksHolesAndWarnings() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = Self.fixture(tmp)
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, root, "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)

        // Only what the safe policy and specials leave out differs.
        let diff = try Self.differences(root, dst + "/fx")
        #expect(diff == ["Only in \(root): abs", "Only in \(root): fifo", "Only in \(root)/sub: escape"].sorted(), "\(diff)")
        // Each left-out entry is named.
        for name in ["fx/abs", "fx/sub/escape", "fx/fifo"] {
            #expect((send.stderr + send.stdout).contains(name), "no warning names \(name): \(send.stderr)")
        }
        // Links stay links, with their own text; nothing was followed.
        for (name, target) in [("rel", "sub/file"), ("dangling", "nothing-here"), ("chain1", "chain2"), ("dirlink", "sub"), ("sub/deeper/up", "../file")] {
            let got = try FileManager.default.destinationOfSymbolicLink(atPath: dst + "/fx/" + name)
            #expect(got == target, "\(name)")
        }
        // The trio is one inode with three names.
        let h = [Self.inode(dst + "/fx/h1"), Self.inode(dst + "/fx/sub/h2"), Self.inode(dst + "/fx/other/h3")]
        #expect(Set(h.map(\.ino)).count == 1 && h.allSatisfy { $0.links == 3 }, "\(h)")
        // Holes stay holes: same content, about the same disk use.
        for name in ["hole-start", "hole-middle", "hole-end"] {
            #expect(hashFile(root + "/" + name) == hashFile(dst + "/fx/" + name), "\(name)")
            #expect(abs(Self.blocks(dst + "/fx/" + name) - Self.blocks(root + "/" + name)) < Self.mib, "\(name): \(Self.blocks(dst + "/fx/" + name)) bytes on disk")
        }
        let done = try #require(doneEvent(send.stdout))
        #expect(done["symlinks"] as? Int == 6, "\(done)")
        #expect(done["hard_links"] as? Int == 2, "\(done)")
        #expect((done["hole_bytes"] as? Int ?? 0) >= 8 * Self.mib, "\(done)")
        #expect((done["bytes_sent"] as? Int ?? .max) < 200_000, "the trio went once and the holes not at all: \(done)")
        let skipped = done["skipped"] as? [String: Int] ?? [:]
        #expect(skipped == ["symlink": 2, "special": 1], "\(done)")
    }

    @Test func linksAllKeepsEveryTargetAndLinksNoneKeepsNone() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = Self.fixture(tmp)
        let all = tmp.sub("all")
        var recv = try FTReceiver(dir: all, extra: ["--once", "--links", "all"])
        var send = try run(ftPath, ["send", recv.address, root, "--links", "all", "-q"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)
        #expect(try Self.differences(root, all + "/fx") == ["Only in \(root): fifo"])
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: all + "/fx/abs") == "/etc/hostname")

        // A receiver keeps its own policy whatever the sender sends.
        let safe = tmp.sub("safe")
        recv = try FTReceiver(dir: safe, extra: ["--once"])
        send = try run(ftPath, ["send", recv.address, root, "--links", "all", "-q"])
        #expect(send.status == 0, "\(send.stderr)")
        let out = recv.child.wait()
        #expect(out.status == 0)
        #expect((out.stderr + out.stdout).contains("fx/abs") && (out.stderr + out.stdout).contains("fx/sub/escape"), "\(out.stderr)")
        #expect(try Self.differences(root, safe + "/fx").count == 3)

        let none = tmp.sub("none")
        recv = try FTReceiver(dir: none, extra: ["--once"])
        send = try run(ftPath, ["send", recv.address, root, "--links", "none", "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)
        let links = listTree(none).filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: none + "/" + $0)) != nil }
        #expect(links.isEmpty, "\(links)")
        #expect((doneEvent(send.stdout)?["skipped"] as? [String: Int])?["symlink"] == 8)
    }

    /// A 5 GiB file holding 4 KiB: the holes neither travel nor land.
    @Test func aFiveGiBSparseFileArrivesSmall() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src") + "/disk.img"
        Self.sparse(src, size: 5 << 30, data: [(2 << 30, 4096)])
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, src, "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)
        var st = stat()
        stat(dst + "/disk.img", &st)
        #expect(st.st_size == 5 << 30)
        #expect(Self.blocks(dst + "/disk.img") < Self.mib, "\(Self.blocks(dst + "/disk.img")) bytes on disk")
        let done = try #require(doneEvent(send.stdout))
        #expect((done["bytes_sent"] as? Int ?? .max) <= 4096, "\(done)")
        #expect(done["verified"] as? Bool == true)
        let hashes = done["hashes"] as? [String: String] ?? [:]
        #expect(hashes["disk.img"] == hashSparseFile(src), "the verified hash is the source's logical content")
        #expect(hashSparseFile(dst + "/disk.img") == hashSparseFile(src))
    }

    /// Owners travel by number when asked and the receiver is root; setuid
    /// and setgid never do.
    @Test func ownersAreKeptByNumberWhenAskedAndReceivedAsRoot() throws {
        try #require(getuid() == 0, "keeping owners needs a root receiver (CI runs as root)")
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/own")
        writeFile(root + "/a", Array("a".utf8))
        writeFile(root + "/s", Array("s".utf8))
        symlink("a", root + "/l")
        chown(root + "/a", 1234, 2345)
        chown(root + "/s", 1234, 2345)
        chmod(root + "/s", 0o6755)
        lchown(root + "/l", 1234, 2345)
        for (flags, keeps) in [([String](), false), (["--owner"], true)] {
            let dst = tmp.sub(keeps ? "kept" : "plain")
            let recv = try FTReceiver(dir: dst, extra: ["--once"])
            let send = try run(ftPath, ["send", recv.address, root, "-q"] + flags)
            #expect(send.status == 0, "\(send.stderr)")
            #expect(recv.child.wait().status == 0)
            for name in ["a", "s", "l"] {
                var st = stat()
                lstat(dst + "/own/" + name, &st)
                #expect((st.st_uid, st.st_gid) == (keeps ? (1234, 2345) : (0, 0)), "\(flags) \(name): \(st.st_uid):\(st.st_gid)")
            }
            var st = stat()
            stat(dst + "/own/s", &st)
            #expect(st.st_mode & 0o7777 == 0o755, "setuid and setgid stripped: \(String(st.st_mode, radix: 8))")
        }
    }

    /// A hostile sender's link that climbs out of the tree is skipped by
    /// the default policy, named in a warning, and nothing is made.
    @Test func anEscapingTargetFromAHostileSenderIsNotMade() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let p = try RawPeer(port: recv.port)
        var link = fileEntry(Array("top/etc".utf8), id: 2, size: 0, kind: .symlink)
        link.linkTarget = Array("../../etc".utf8)
        #expect(p.offer([fileEntry(Array("top".utf8), id: 1, size: 0, kind: .directory), link]) != nil)
        p.send(.end)
        let replies = p.readUntilClosed()
        let acks = replies.compactMap { f -> BatchAck? in if case .batchAck(let a) = f { return a } else { return nil } }
        #expect(acks.first?.results.first { $0.fileID == 2 }?.status == .skipped, "\(replies)")
        #expect(replies.contains { if case .done = $0 { return true } else { return false } }, "\(replies)")
        var st = stat()
        #expect(lstat(dst + "/top/etc", &st) != 0, "the link was made")
        let out = recv.child.wait()
        #expect((out.stderr + out.stdout).contains("top/etc"), "\(out.stderr)")
    }
}
