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
