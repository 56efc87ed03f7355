import Testing
@testable import FTFrontEnd

/// Enough of a VT100 to replay what `LineView` writes: printable text with
/// autowrap (and the pending-wrap column), CR, LF, cursor up/forward,
/// erase below and erase line. Rows grow as needed, so nothing scrolls.
struct Screen {
    let width: Int
    var rows: [[Character]] = []
    var row = 0
    /// 0...width; `width` is the pending-wrap state after the last column.
    var column = 0

    init(width: Int) { self.width = width }

    var text: [String] {
        var out = rows.map { String($0.filter { $0 != "\0" }).trimmingTrailingSpaces }
        while out.last?.isEmpty == true { out.removeLast() }
        return out
    }

    private mutating func ensure(_ r: Int) {
        while rows.count <= r { rows.append(Array(repeating: " ", count: width)) }
    }

    mutating func write(_ s: String) {
        var chars = Array(s)
        var i = 0
        while i < chars.count {
            let ch = chars[i]
            i += 1
            switch ch {
            case "\r": column = 0
            case "\n": row += 1
            case "\r\n": column = 0; row += 1
            case "\u{1B}":
                guard i < chars.count, chars[i] == "[" else { continue }
                i += 1
                var n = ""
                while i < chars.count, chars[i].isNumber { n.append(chars[i]); i += 1 }
                let final = chars[i]
                i += 1
                let count = Int(n) ?? 1
                if column == width { column = width - 1 }
                switch final {
                case "A": row = max(0, row - count)
                case "C": column = min(width - 1, column + count)
                case "J" where n.isEmpty:
                    ensure(row)
                    for c in column..<width { rows[row][c] = " " }
                    if row + 1 < rows.count { rows.removeSubrange((row + 1)...) }
                case "H":
                    row = 0
                    column = 0
                case "J" where n == "2":
                    rows.removeAll()
                case "K" where n == "2":
                    ensure(row)
                    rows[row] = Array(repeating: " ", count: width)
                default: Issue.record("unexpected sequence ESC [\(n)\(final)")
                }
            default:
                let w = ch.displayWidth
                if column + w > width { row += 1; column = 0 }
                ensure(row)
                rows[row][column] = ch
                if w == 2 { rows[row][column + 1] = "\0" }
                column += w
            }
        }
        chars.removeAll()
    }
}

extension String {
    var trimmingTrailingSpaces: String {
        var s = Substring(self)
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

func state(typing text: String, left: Int = 0) -> LineEditState {
    var s = LineEditState()
    for u in text.unicodeScalars { _ = s.apply(.text(u)) }
    for _ in 0..<left { _ = s.apply(.left) }
    return s
}

@Suite struct LineViewTests {
    /// The reported defect: a typed line wider than the terminal left a
    /// stale row behind for each line that came in.
    @Test(arguments: [0, 25, 50])
    func aWrappedLineLeavesNoStaleRows(left: Int) {
        let typed = String(repeating: "abcdefghij", count: 5)
        let s = state(typing: typed, left: left)
        var view = LineView()
        var screen = Screen(width: 20)
        screen.write(view.draw(s, columns: 20))
        for i in 1...3 { screen.write(view.printAbove("incoming \(i)", s, columns: 20)) }
        #expect(screen.text == ["incoming 1", "incoming 2", "incoming 3",
                                "> abcdefghijabcdefgh", "ijabcdefghijabcdefgh", "ijabcdefghij"], "\(screen.text)")
        let at = 2 + typed.count - left
        #expect(screen.row == 3 + at / 20 && screen.column == at % 20, "the cursor is on character \(typed.count - left)")
    }

    @Test func aLineEndingAtTheMarginMovesTheCursorToTheNextRow() {
        let s = state(typing: "12345678")
        var view = LineView()
        var screen = Screen(width: 10)
        screen.write(view.draw(s, columns: 10))
        #expect(screen.row == 1 && screen.column == 0)
        screen.write(view.printAbove("x", s, columns: 10))
        screen.write(view.printAbove("y", s, columns: 10))
        #expect(screen.text == ["x", "y", "> 12345678"])
        #expect(screen.row == 3 && screen.column == 0)
    }

    @Test func wideCharactersWrapWhole() {
        let s = state(typing: "你好你好好", left: 1)
        var view = LineView()
        var screen = Screen(width: 9)
        screen.write(view.draw(s, columns: 9))
        screen.write(view.printAbove("a", s, columns: 9))
        // 2 + 6 columns, then a two-column character does not fit in the one left.
        #expect(screen.text == ["a", "> 你好你", "好好"], "\(screen.text)")
        #expect(screen.row == 2 && screen.column == 2, "the cursor is on the last character")
    }

    @Test func ctrlLClearsAndTheLineIsDrawnAtTheTop() {
        var s = state(typing: String(repeating: "y", count: 30))
        var view = LineView()
        var screen = Screen(width: 20)
        screen.write(view.printAbove("old", s, columns: 20))
        var decoder = KeyDecoder()
        for key in decoder.feed([0x0C]) { #expect(s.apply(key) == .clearScreen) }
        screen.write(view.clearScreen() + view.draw(s, columns: 20))
        #expect(screen.text == ["> yyyyyyyyyyyyyyyyyy", "yyyyyyyyyyyy"], "\(screen.text)")
    }

    @Test func shrinkingTheLineClearsWhatItLeft() {
        var s = state(typing: String(repeating: "x", count: 45))
        var view = LineView()
        var screen = Screen(width: 20)
        screen.write(view.draw(s, columns: 20))
        for _ in 0..<40 { _ = s.apply(.backspace) }
        screen.write(view.draw(s, columns: 20))
        #expect(screen.text == ["> xxxxx"])
    }
}
