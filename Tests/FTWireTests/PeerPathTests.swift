import Testing
@testable import FTWire

@Suite struct PeerPathTests {
    @Test(arguments: [
        "a", "a/b/c", "中文 文件.txt", "dir/中文/emoji 👋.bin", "..a", "a..", ".hidden", "a/.b/..c",
        "back\\slash", String(repeating: "x", count: 255),
    ])
    func acceptsPlainRelativeNames(path: String) throws {
        let p = try PeerPath.validate(Array(path.utf8))
        #expect(p.description == path)
    }

    @Test(arguments: [
        ("", PeerPath.Violation.empty),
        ("/etc/passwd", .absolute),
        ("../x", .dotComponent("..")),
        ("a/../../x", .dotComponent("..")),
        ("a/..", .dotComponent("..")),
        ("./x", .dotComponent(".")),
        ("a/./b", .dotComponent(".")),
        ("a//b", .emptyComponent),
        ("a/", .emptyComponent),
        ("a\u{0}b", .controlCharacter(0)),
        ("a\nb", .controlCharacter(0x0A)),
        ("\u{1B}[31mred", .controlCharacter(0x1B)),
        ("del\u{7F}", .controlCharacter(0x7F)),
        ("csi\u{9B}31m", .controlCharacter(0x9B)),
        (String(repeating: "x", count: 256), .componentTooLong(256)),
    ])
    func refusesHostileNames(path: String, expected: PeerPath.Violation) {
        #expect(throws: expected) { try PeerPath.validate(Array(path.utf8)) }
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: PeerPath.Violation.notUTF8) { try PeerPath.validate([0x61, 0xFF, 0x62]) }
        // An overlong encoding of '/' must not sneak a separator past the check.
        #expect(throws: PeerPath.Violation.notUTF8) { try PeerPath.validate([0x61, 0xC0, 0xAF, 0x62]) }
    }

    /// The fast comparisons agree with plain element-wise ones on paths
    /// that differ at every offset around the 8-byte steps.
    @Test func byteComparisonsMatchTheirDefinitions() {
        func reference(_ a: [UInt8], _ b: [UInt8]) -> Bool {
            for (x, y) in zip(a, b) where x != y {
                return (x == 0x2F ? 0 : x) < (y == 0x2F ? 0 : y)
            }
            return a.count < b.count
        }
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("ab/.-Z".utf8)
        for _ in 0..<2000 {
            let n = Int.random(in: 0...40, using: &rng)
            let a = (0..<n).map { _ in alphabet.randomElement(using: &rng)! }
            var b = a
            switch Int.random(in: 0...2, using: &rng) {
            case 0 where !b.isEmpty: b[Int.random(in: 0..<b.count, using: &rng)] = alphabet.randomElement(using: &rng)!
            case 1: b += (0..<Int.random(in: 0...9, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            default: b = Array(b.prefix(Int.random(in: 0...n, using: &rng)))
            }
            #expect(PeerPath.precedesInTree(a, b) == reference(a, b), "\(a) \(b)")
            #expect(Bytes.equal(a, b) == (a == b))
            #expect(Bytes.hasPrefix(b, a) == b.starts(with: a) && Bytes.hasPrefix(a, b) == a.starts(with: b))
            #expect(Bytes.commonPrefix(a, b) == zip(a, b).prefix { $0 == $1 }.count)
        }
    }

    @Test func refusesOverlongPaths() {
        let long = Array(repeating: Array("abcdefgh/".utf8), count: 460).joined()
        #expect(throws: PeerPath.Violation.tooLong(4140)) { try PeerPath.validate(Array(long)) }
    }
}

@Suite struct EscapeTests {
    @Test func plainTextPassesThrough() {
        #expect(Escape.forDisplay("你好, ft 👋 a-b_c.txt") == "你好, ft 👋 a-b_c.txt")
    }

    @Test func controlsAndANSIAreShownNotObeyed() {
        #expect(Escape.forDisplay("\u{1B}[2J\u{1B}]0;pwn\u{07}") == "\\e[2J\\e]0;pwn\\x07")
        #expect(Escape.forDisplay("a\nb\tc\r") == "a\\nb\\tc\\r")
        #expect(Escape.forDisplay("\u{9B}31m") == "\\u{009B}31m")
        #expect(Escape.forDisplay("evil\u{202E}txt.exe") == "evil\\u{202E}txt.exe")
        #expect(Escape.forDisplay("back\\slash") == "back\\\\slash")
    }

    @Test func invalidBytesAreShownAsHex() {
        #expect(Escape.forDisplay(bytes: [0x61, 0xFF, 0xE4, 0xBD, 0x62]) == "a\\xFF\\xE4\\xBDb")
        #expect(Escape.forDisplay(bytes: Array("中".utf8) + [0xE4, 0x41]) == "中\\xE4A")
        #expect(Escape.forDisplay(bytes: [0xED, 0xA0, 0x80]) == "\\xED\\xA0\\x80")  // a surrogate
    }

    @Test func boundaryNeverCutsACharacter() {
        let b = Array("a中b".utf8)  // a, e4 b8 ad, b
        #expect(UTF8Scan.boundary(in: b, end: 5) == 5)
        #expect(UTF8Scan.boundary(in: b, end: 4) == 4)
        #expect(UTF8Scan.boundary(in: b, end: 3) == 1)
        #expect(UTF8Scan.boundary(in: b, end: 2) == 1)
        #expect(UTF8Scan.boundary(in: b, end: 1) == 1)
    }
}

@Suite struct LineBufferTests {
    @Test func splitsLinesAcrossAppendsAndDropsCR() {
        var b = LineBuffer(cap: 100)
        #expect(b.append(Array("hel".utf8)) == [])
        #expect(b.append(Array("lo\r\nworld\n\npart".utf8)) == [.line(Array("hello".utf8)), .line(Array("world".utf8)), .line([])])
        #expect(b.finish() == .line(Array("part".utf8)))
        #expect(b.finish() == nil)
    }

    @Test func overlongLineIsCutAndTheRestDropped() {
        var b = LineBuffer(cap: 10)
        var items = b.append([UInt8](repeating: 0x61, count: 25))
        #expect(items == [.truncated([UInt8](repeating: 0x61, count: 10))])
        #expect(b.pendingCount == 0)
        items = b.append(Array("still dropped\nnext\n".utf8))
        #expect(items == [.line(Array("next".utf8))])
    }

    @Test func cutNeverSplitsACharacter() {
        var b = LineBuffer(cap: 5)
        // The 5th byte starts a second 中: the cut keeps "a中" (4 bytes).
        let items = b.append(Array("a中中".utf8))
        #expect(items == [.truncated(Array("a中".utf8))])
    }

    @Test func memoryStaysBoundedForAMegabyteWithoutNewline() {
        var b = LineBuffer()
        var truncated = 0
        for _ in 0..<16 {
            for item in b.append([UInt8](repeating: 0x41, count: 65_536)) {
                if case .truncated = item { truncated += 1 }
            }
            #expect(b.pendingCount < LineBuffer.defaultCap)
        }
        #expect(truncated == 1)
    }

    @Test func chatEscapeKeepsBackslashesAndShowsControls() {
        #expect(Escape.forChat(bytes: Array("a\\eb\u{1B}[2J".utf8)) == "a\\eb\\e[2J")
        #expect(Escape.forChat(bytes: [0x68, 0xFF, 0x69]) == "h\\xFFi")
        #expect(Escape.forChat(bytes: Array("你好, ft 👋".utf8)) == "你好, ft 👋")
    }
}
