import Testing
import FTTransfer

/// The gitignore-style patterns of --exclude/--include, corner by corner.
@Suite struct PathFilterTests {
    func filter(_ rules: [(String, Bool)]) throws -> PathFilter {
        var f = PathFilter()
        for (p, include) in rules { try f.add(p, include: include) }
        return f
    }

    func out(_ f: PathFilter, _ path: String, dir: Bool = false) -> Bool { f.excludes(Array(path.utf8), isDirectory: dir) }

    @Test func namesMatchAtAnyDepthAndSlashesAnchor() throws {
        let f = try filter([("*.o", false), ("/build", false), ("doc/*.txt", false)])
        #expect(out(f, "a.o") && out(f, "src/deep/x.o"))
        #expect(!out(f, "a.c") && !out(f, "a.o/x.c"), "* matches within one name only")
        #expect(out(f, "build", dir: true) && !out(f, "src/build", dir: true), "a leading / anchors")
        #expect(out(f, "doc/a.txt") && !out(f, "x/doc/a.txt") && !out(f, "doc/sub/a.txt"), "an inner / anchors, * stays in one name")
    }

    @Test func doubleStarSpansDirectories() throws {
        let f = try filter([("**/cache", false), ("logs/**", false), ("a/**/b", false)])
        #expect(out(f, "cache", dir: true) && out(f, "x/y/cache", dir: true))
        #expect(out(f, "logs/today") && out(f, "logs/x/y") && !out(f, "logs", dir: true), "logs/** is what is inside logs")
        #expect(out(f, "a/b") && out(f, "a/x/b") && out(f, "a/x/y/b") && !out(f, "a/x/c"))
    }

    @Test func trailingSlashMeansDirectoriesOnly() throws {
        let f = try filter([("tmp/", false)])
        #expect(out(f, "tmp", dir: true) && out(f, "x/tmp", dir: true))
        #expect(!out(f, "tmp") && !out(f, "x/tmp"), "a file named tmp stays")
    }

    @Test func lastMatchWinsAndIncludesTakeBack() throws {
        let f = try filter([("*.log", false), ("keep.log", true)])
        #expect(out(f, "a.log") && !out(f, "keep.log") && !out(f, "x/keep.log"))
        let g = try filter([("keep.log", true), ("*.log", false)])
        #expect(out(g, "keep.log"), "order matters: the later exclude wins")
    }

    @Test func bracketsQuestionMarksAndEscapes() throws {
        let f = try filter([("[ab]?.txt", false), ("[!x]z", false), ("v[0-9]", false), ("\\*star", false)])
        #expect(out(f, "a1.txt") && out(f, "bq.txt") && !out(f, "c1.txt") && !out(f, "a12.txt"))
        #expect(out(f, "yz") && !out(f, "xz"))
        #expect(out(f, "v7") && !out(f, "va"))
        #expect(out(f, "*star") && !out(f, "Xstar"))
        #expect(throws: PathFilter.PatternError.self) { try filter([("[abc", false)]) }
        #expect(throws: PathFilter.PatternError.self) { try filter([("", false)]) }
        #expect(throws: PathFilter.PatternError.self) { try filter([("/", false)]) }
    }

    @Test func patternFiles() throws {
        var f = PathFilter()
        try f.addLines("# build output\n*.o\n\n!main.o\n\\#hash\nnode_modules/   \r\n")
        #expect(f.rules.count == 4)
        #expect(out(f, "x.o") && !out(f, "main.o") && out(f, "#hash") && out(f, "a/node_modules", dir: true))
        #expect(!out(f, ""), "the pushed directory itself is never excluded")
    }
}
