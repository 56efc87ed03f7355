import Foundation
import Testing
import FTTestSupport
import FTWire

/// A local user who can write into the destination races a real push: a
/// second process, started as another user (nobody), plays the attacker.
@Suite(.serialized) struct DestinationRaceTests {
    /// Runs `script` with sh as the user nobody, in `dir`.
    static func asNobody(_ script: String, in dir: String) throws -> Finished {
        try runAsNobody("/bin/sh", ["-c", "cd '\(dir)' && " + script])
    }

    /// A directory the attacker may write into (a shared incoming folder).
    static func shared(_ tmp: TempDir, _ name: String) throws -> String {
        try #require(geteuid() == 0, "these tests play a second user and need root (setpriv)")
        chmod(tmp.path, 0o755)
        let d = tmp.sub(name)
        chmod(d, 0o777)
        return d
    }

    /// The name of the first part file to appear in `dir`.
    static func waitForPart(in dir: String) -> String? {
        for _ in 0..<1000 {
            if let p = listTree(dir).first(where: { $0.hasPrefix(".ft-") && $0.hasSuffix(".part") }) { return p }
            usleep(10_000)
        }
        return nil
    }

    /// The attacker renames the part file aside and puts its own file
    /// under the part's name; the commit must put the written, verified
    /// inode in place, not whatever the part's name holds.
    @Test func aSwappedPartFileIsNotWhatLands() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = try Self.shared(tmp, "dst")
        let src = tmp.sub("src") + "/big.bin"
        let bytes = patternBytes(24 << 20, seed: 61)
        writeFile(src, bytes)
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let sender = try Child(ftPath, ["send", recv.address, src, "-q", "--limit", "12M"])
        let part = try #require(Self.waitForPart(in: dst), "no part file appeared")
        let swap = try Self.asNobody("mv '\(part)' aside && printf evil > '\(part)'", in: dst)
        #expect(swap.status == 0, "the attacker could not swap: \(swap.stderr)")
        let sent = sender.wait()
        #expect(sent.status == 0, "\(sent.stderr)")
        _ = recv.child.wait()
        expectSame(readFile(dst + "/big.bin"), bytes, "what landed under the final name")
        #expect(readFile(dst + "/" + part) == Array("evil".utf8), "the attacker's file under ft's name was deleted")
    }

    /// A fifo planted at the map's name must not freeze the receiver: the
    /// push goes on, another session is served meanwhile, and the fifo
    /// (not ft's file) stays.
    @Test func aFifoAtTheMapDoesNotStallTheReceiver() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = try Self.shared(tmp, "dst")
        let src = tmp.sub("src") + "/big.bin"
        let bytes = patternBytes(40 << 20, seed: 62)
        writeFile(src, bytes)
        let small = tmp.path + "/src/small.txt"
        writeFile(small, Array("served meanwhile\n".utf8))
        let recv = try FTReceiver(dir: dst)
        let sender = try Child(ftPath, ["send", recv.address, src, "-q", "--limit", "16M"])
        let part = try #require(Self.waitForPart(in: dst), "no part file appeared")
        let map = String(part.dropLast(".part".count)) + ".map"
        let plant = try Self.asNobody("mkfifo '\(map)'", in: dst)
        #expect(plant.status == 0, "\(plant.stderr)")
        // The map is written every 16 MiB: the push passes it twice.
        let other = try run(ftPath, ["send", recv.address, small, "-q"], seconds: 20)
        #expect(other.status == 0, "another session was not served: \(other.stderr)")
        let sent = sender.wait(seconds: 30)
        #expect(sent.status == 0, "\(sent.stderr)")
        _ = recv.stop()
        expectSame(readFile(dst + "/big.bin"), bytes)
        var st = stat()
        #expect(lstat(dst + "/" + map, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO, "the planted fifo was removed")
    }

    /// The stale-partial sweep takes only what ft made.
    @Test func theSweepLeavesTheUsersOwnFiles() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = try Self.shared(tmp, "dst")
        tmp.sub("dst/t")
        chmod(dst + "/t", 0o777)
        let userFiles = [".ft-notes.part", ".ft-2023-budget.map", ".ft-0123456789abcdef.map"]
        let made = try Self.asNobody(userFiles.map { "echo mine > t/'\($0)'" }.joined(separator: " && ")
                                     + " && echo mine > t/.ft-1111111111111111.part", in: dst)
        #expect(made.status == 0, "\(made.stderr)")
        // One of ft's shape and ours: stale, it goes. A map-shaped name of
        // ours whose content is no map stays.
        writeFile(dst + "/t/.ft-fedcba9876543210.part", [1, 2, 3])
        writeFile(dst + "/t/.ft-00000000000000aa.map", Array("not a map".utf8))
        let old = [timespec(tv_sec: 1_600_000_000, tv_nsec: 0), timespec(tv_sec: 1_600_000_000, tv_nsec: 0)]
        for name in listTree(dst + "/t") { utimensat(AT_FDCWD, dst + "/t/" + name, old, AT_SYMLINK_NOFOLLOW) }
        let root = tmp.sub("src/t")
        writeFile(root + "/new.txt", [9])
        _ = try pushWithCLI(dst, [root])
        #expect(listTree(dst + "/t") == (userFiles + [".ft-00000000000000aa.map", ".ft-1111111111111111.part", "new.txt"]).sorted(),
                "\(listTree(dst + "/t"))")
    }

    /// The attacker owns a directory the push writes into and moves it out
    /// of the destination mid-push: from then on nothing may land in it,
    /// wherever it is now (every file's directory is found afresh beneath
    /// the destination, and a commit checks it is still there).
    @Test func aDirectoryMovedOutMidPushGetsNothingMore() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = try Self.shared(tmp, "dst")
        let outside = try Self.shared(tmp, "outside")
        let made = try Self.asNobody("mkdir -p tree/sub", in: dst)
        #expect(made.status == 0, "\(made.stderr)")
        _ = tmp.sub("src/tree/sub")
        let src = tmp.path + "/src/tree"
        for i in 0..<150 { writeFile(src + "/sub/f\(String(format: "%03d", i)).bin", patternBytes(16 << 10, seed: UInt64(i))) }
        writeFile(src + "/sub/zz-big.bin", patternBytes(6 << 20, seed: 99))
        let recv = try FTReceiver(dir: dst)
        let sender = try Child(ftPath, ["send", recv.address, src, "-q", "--limit", "2M"])
        var landed = false
        for _ in 0..<1000 where !landed {
            landed = listTree(dst + "/tree/sub").contains { !$0.hasPrefix(".ft-") }
            if !landed { usleep(5_000) }
        }
        #expect(landed, "no file landed: \(listTree(dst)) \(sender.stderrSoFar) \(recv.child.stderrSoFar)")
        let move = try Self.asNobody("mv tree '\(outside)/'", in: dst)
        #expect(move.status == 0, "the attacker could not move the directory: \(move.stderr)")
        usleep(150_000)
        let atMove = Set(listTree(outside + "/tree/sub"))
        let sent = sender.wait(seconds: 60)
        _ = recv.stop()
        let atEnd = Set(listTree(outside + "/tree/sub"))
        print("RACE moved with \(atMove.count) entries in place; the sender: exit \(sent.status), \(sent.stderr.prefix(300))")
        #expect(atEnd.subtracting(atMove).isEmpty, "landed in the moved directory afterwards: \(atEnd.subtracting(atMove).sorted())")
        #expect(atMove.count < 151, "the whole push landed before the move (\(atMove.count) entries): the test raced nothing")
        // The push went on beneath the destination: what had not landed
        // before the move is in a tree/sub made afresh there, whole.
        if sent.status == 0 {
            for name in Set(listTree(src + "/sub")).subtracting(atMove) {
                expectSame(readFile(dst + "/tree/sub/" + name), readFile(src + "/sub/" + name), name)
            }
        }
    }

    /// A sender that claims a big file, sends one byte and hangs up leaves
    /// a partial of one byte, not a reservation of the whole size.
    @Test func aPushThatHangsUpPinsOnlyWhatArrived() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst)
        let p = try RawPeer(port: recv.port)
        _ = p.offer([fileEntry(Array("claimed.bin".utf8), size: 512 << 20)])
        p.send(.data(DataHeader(fileID: 1, length: 1, offset: 0)))
        p.send([7])
        p.hangUp()
        #expect(recv.child.waitForOutput("claimed.bin"), "\(recv.child.stdoutSoFar)")
        _ = recv.stop()
        let part = try #require(listTree(dst).first { $0.hasSuffix(".part") }, "the byte that arrived was not kept: \(listTree(dst))")
        var st = stat()
        stat(dst + "/" + part, &st)
        #expect(st.st_size == 1 && Int(st.st_blocks) * 512 <= 1 << 20, "size \(st.st_size), \(Int(st.st_blocks) * 512) bytes allocated")
        p.close()
    }
}
