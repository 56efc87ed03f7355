import Foundation
import Testing
import FTTestSupport
@testable import FTTransfer

@Suite struct ParentDirectoryTests {
    /// What `ParentDirectory.open` gives must be what the file's own open
    /// gives, whichever parent it holds: siblings, a move to another
    /// directory and back, a prefix of the held parent's path, a file in
    /// the root itself, and a missing file or directory (the same errno).
    /// Beneath a walked root (`anchored`), and by full path (a root that
    /// is a file).
    @Test(arguments: [false, true]) func opensWhatTheFileNames(anchored: Bool) throws {
        let tmp = TempDir("ft-parent")
        defer { tmp.cleanup() }
        let a = tmp.sub("a"), ab = tmp.sub("ab"), nested = tmp.sub("a/b")
        let files = [a + "/x", a + "/y", ab + "/x", nested + "/x", a + "/z", tmp.path + "/top"]
        for (i, f) in files.enumerated() { writeFile(f, Array("file \(i) at \(f)".utf8)) }
        let anchor = try Self.anchor(tmp.path, anchored)
        let parent = ParentDirectory()
        for f in files + files.reversed() {
            let fd = parent.open(SourcePath(f, under: anchor), O_RDONLY | O_CLOEXEC)
            #expect(fd >= 0, "opened \(f)")
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var buf = [UInt8](repeating: 0, count: 256)
            let n = read(fd, &buf, buf.count)
            #expect(Array(buf[0..<max(n, 0)]) == readFile(f), "the bytes of \(f)")
        }
        errno = 0
        #expect(parent.open(SourcePath(a + "/missing", under: anchor), O_RDONLY) == -1)
        #expect(errno == ENOENT)
        #expect(parent.open(SourcePath(tmp.path + "/nodir/x", under: anchor), O_RDONLY) == -1, "a parent that cannot be held falls back")
        #expect(errno == ENOENT)
    }

    /// A directory of the walked tree swapped for a symlink, or a file
    /// swapped for one, is not followed beneath the root: ELOOP, through
    /// the held parent and without it. By full path it is (the user's own
    /// links in a path they named).
    @Test(arguments: [false, true]) func aSwappedSymlinkIsNotFollowedBeneathTheRoot(anchored: Bool) throws {
        let tmp = TempDir("ft-parent")
        defer { tmp.cleanup() }
        let root = tmp.sub("root"), elsewhere = tmp.sub("elsewhere")
        writeFile(elsewhere + "/secret", Array("not in the tree".utf8))
        writeFile(root + "/plain", Array("in the tree".utf8))
        #expect(symlink(elsewhere, root + "/d") == 0)
        #expect(symlink(elsewhere + "/secret", root + "/f") == 0)
        let anchor = try Self.anchor(root, anchored)
        for path in [root + "/d/secret", root + "/f"] {
            for parent in [ParentDirectory(), nil] {
                let source = SourcePath(path, under: anchor)
                errno = 0
                let fd = parent?.open(source, O_RDONLY | O_CLOEXEC) ?? source.open(O_RDONLY | O_CLOEXEC)
                if fd >= 0 { close(fd) }
                if anchored {
                    #expect(fd == -1 && errno == ELOOP, "\(path) was followed (held parent: \(parent != nil))")
                } else {
                    #expect(fd >= 0, "\(path) by full path")
                }
            }
        }
        let fd = try SourceFile.openRegular(SourcePath(root + "/plain", under: anchor)).fd
        close(fd)
        if anchored {
            do {
                close(try SourceFile.openRegular(SourcePath(root + "/d/secret", under: anchor)).fd)
                Issue.record("opened a file through a swapped directory")
            } catch {
                #expect(error.description.contains("is now a symlink"), "\(error)")
            }
        }
    }

    private static func anchor(_ root: String, _ anchored: Bool) throws -> SourceAnchor? {
        guard anchored else { return nil }
        let walked = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(walked >= 0)
        defer { close(walked) }
        return try #require(SourceAnchor(walked: walked, local: root))
    }
}
