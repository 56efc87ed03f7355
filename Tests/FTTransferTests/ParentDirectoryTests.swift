import Foundation
import Testing
import FTTestSupport
@testable import FTTransfer

@Suite struct ParentDirectoryTests {
    /// What `ParentDirectory.open` gives must be what a full-path open
    /// gives, whichever parent it holds: siblings, a move to another
    /// directory and back, a prefix of the held parent's path, and a
    /// missing file or directory (the same errno).
    @Test func opensWhatTheFullPathNames() throws {
        let tmp = TempDir("ft-parent")
        defer { tmp.cleanup() }
        let a = tmp.sub("a"), ab = tmp.sub("ab"), nested = tmp.sub("a/b")
        let files = [a + "/x", a + "/y", ab + "/x", nested + "/x", a + "/z", tmp.path + "/top"]
        for (i, f) in files.enumerated() { writeFile(f, Array("file \(i) at \(f)".utf8)) }
        let parent = ParentDirectory()
        for f in files + files.reversed() {
            let fd = parent.open(f, O_RDONLY | O_CLOEXEC)
            #expect(fd >= 0, "opened \(f)")
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var buf = [UInt8](repeating: 0, count: 256)
            let n = read(fd, &buf, buf.count)
            #expect(Array(buf[0..<max(n, 0)]) == readFile(f), "the bytes of \(f)")
        }
        errno = 0
        #expect(parent.open(a + "/missing", O_RDONLY) == -1)
        #expect(errno == ENOENT)
        #expect(parent.open(tmp.path + "/nodir/x", O_RDONLY) == -1, "a parent that cannot be held falls back")
        #expect(errno == ENOENT)
    }
}
