import Foundation
import Testing
import FTTestSupport
import CXXHash
import FTWire

/// Pushes through the real `ft` binaries over loopback, comparing bytes.
@Suite(.serialized) struct CLIPushTests {
    @Test func treeArrivesWithStructureModesAndTimes() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let root = tmp.sub("src/tree")
        tmp.sub("src/tree/a/b/c")
        tmp.sub("src/tree/empty dir")
        tmp.sub("src/tree/中文 目录/深")
        writeFile(root + "/a/b/c/deep.bin", patternBytes(300_001, seed: 1))
        writeFile(root + "/中文 文件.txt", Array("你好, ft 👋\n".utf8))
        writeFile(root + "/empty", [])
        writeFile(root + "/中文 目录/深/x", patternBytes(4096, seed: 2))
        chmod(root + "/a/b/c/deep.bin", 0o640)
        chmod(root + "/empty", 0o600)
        chmod(root + "/a", 0o750)
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789)]
        utimensat(AT_FDCWD, root + "/中文 文件.txt", &times, 0)
        utimensat(AT_FDCWD, root + "/a/b", &times, 0)

        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, root, "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)

        #expect(listTree(dst + "/tree") == listTree(root))
        for rel in listTree(root) {
            var a = stat(), b = stat()
            stat(root + "/" + rel, &a)
            stat(dst + "/tree/" + rel, &b)
            #expect(a.st_mode == b.st_mode, "mode of \(rel)")
            if a.st_mode & S_IFMT == S_IFREG {
                expectSame(readFile(root + "/" + rel), readFile(dst + "/tree/" + rel), "content of \(rel)")
                #expect(a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec, "mtime of \(rel)")
            }
        }
        var dirTime = stat()
        stat(dst + "/tree/a/b", &dirTime)
        #expect(dirTime.st_mtim.tv_sec == 1_600_000_000, "directory mtime applied after its contents")
        // The done event carries every verified hash.
        let done = send.stdoutLines.first { $0.contains("\"event\":\"done\"") } ?? ""
        #expect(done.contains("\"tree/中文 文件.txt\":\""))
        #expect(done.contains("\"verified\":true"))
    }

    @Test func stdinStreamArrivesUnderItsName() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let input = tmp.path + "/input"
        let bytes = patternBytes(3 * (1 << 20) + 17, seed: 9)
        writeFile(input, bytes)
        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, "-", "--name", "stream.bin", "--json"], stdinFile: input)
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait().status == 0)
        expectSame(readFile(tmp.path + "/dst/stream.bin"), bytes)
        let done = send.stdoutLines.first { $0.contains("\"event\":\"done\"") } ?? ""
        #expect(done.contains("\"bytes_sent\":\(bytes.count)"))
    }

    @Test func receiverToStdoutFeedsAPipe() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.path + "/f"
        let bytes = patternBytes(2 * (1 << 20) + 1, seed: 5)
        writeFile(src, bytes)
        // --stdout moves the JSON events to stderr; the data owns stdout.
        let recv = try FTReceiver(dir: tmp.path, extra: ["--stdout"])
        let send = try run(ftPath, ["send", recv.address, src, "-q"])
        #expect(send.status == 0, "\(send.stderr)")
        let got = recv.child.wait()
        #expect(got.status == 0)
        expectSame(got.stdoutBytes, bytes, "stdout")
        #expect(got.stderr.contains("\"event\":\"done\""))
    }

    @Test func overFourGiBKeepsItsSizeAndHash() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        // Sparse source: 4 GiB + 5 bytes, with data at both ends.
        let src = tmp.path + "/huge.img"
        let size: Int64 = (4 << 30) + 5
        let fd = open(src, O_CREAT | O_WRONLY, 0o644)
        ftruncate(fd, off_t(size))
        let head = patternBytes(1 << 20, seed: 11)
        let tail = patternBytes(4093, seed: 12)
        _ = head.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        _ = tail.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(size) - 4093) }
        close(fd)
        let expected = hashFile(src)

        let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"])
        let send = try run(ftPath, ["send", recv.address, src, "--json"], seconds: 600)
        #expect(send.status == 0, "\(send.stderr)")
        #expect(recv.child.wait(seconds: 60).status == 0)
        var st = stat()
        stat(tmp.path + "/dst/huge.img", &st)
        #expect(Int64(st.st_size) == size)
        #expect(hashFile(tmp.path + "/dst/huge.img") == expected)
        let done = send.stdoutLines.first { $0.contains("\"event\":\"done\"") } ?? ""
        #expect(done.contains(expected), "the reported hash is the file's xxh3-128")
    }

    /// The verified copy path and the sealed one read a chunk on the loop
    /// thread when that cannot wait (RWF_NOWAIT on a disk filesystem's page
    /// cache, a plain read on tmpfs) and on the ring otherwise: from either
    /// kind of filesystem, clear or sealed, a file of several chunks and a
    /// ragged tail arrives whole.
    @Test func aBigFileArrivesWholeFromTmpfsAndFromDisk() throws {
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        var bases = ["/tmp"]
        if mounts.contains(" /dev/shm tmpfs ") {
            bases.append("/dev/shm")
        } else {
            print("warning: /dev/shm is not tmpfs here: the tmpfs read path goes untested")
        }
        for base in bases {
            let dir = base + "/ft-bigread-\(getpid())"
            mkdir(dir, 0o755)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let bytes = patternBytes(9 * (1 << 20) + 7, seed: 21)
            writeFile(dir + "/big.bin", bytes)
            for flags in [[], ["--encrypt"]] {
                let tmp = TempDir()
                defer { tmp.cleanup() }
                let recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once"])
                let send = try run(ftPath, ["send", recv.address, dir + "/big.bin", "-q"] + flags, seconds: 120)
                #expect(send.status == 0, "\(base) \(flags): \(send.stderr)")
                #expect(recv.child.wait(seconds: 60).status == 0)
                #expect(readFile(tmp.path + "/dst/big.bin") == bytes, "\(base) \(flags)")
            }
        }
    }
}
