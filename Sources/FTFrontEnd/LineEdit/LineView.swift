/// Draws the prompt and the line being typed on a terminal that wraps at
/// `columns`, and remembers which of its rows the cursor was left on, so
/// the next draw starts from the first row instead of leaving a stale one
/// behind for each wrapped row.
///
/// Positions are counted in display columns (CJK and emoji take two; a
/// wide character that does not fit at a row's end goes to the next row,
/// as terminals do). A line that ends exactly at the right margin gets an
/// explicit newline: terminals leave the cursor pending in the last column
/// there, and the row arithmetic would be one off.
package struct LineView: Sendable {
    package let prompt: String
    /// Row of the cursor within the drawn area, from the last draw.
    private var cursorRow = 0

    package init(prompt: String = "> ") { self.prompt = prompt }

    /// Moves to the area's first row and clears from there down.
    package mutating func erase() -> String {
        let up = cursorRow > 0 ? "\u{1B}[\(cursorRow)A" : ""
        cursorRow = 0
        return up + "\r\u{1B}[J"
    }

    /// Clears the whole screen (Ctrl-L); the next draw starts at the top.
    package mutating func clearScreen() -> String {
        cursorRow = 0
        return "\u{1B}[H\u{1B}[2J"
    }

    /// Erases the area and draws it again for `state`.
    package mutating func draw(_ state: LineEditState, columns: Int) -> String {
        let width = max(columns, 2)
        var out = erase()
        out += prompt + state.line
        var layout = Layout(width: width)
        for ch in prompt { layout.place(ch) }
        var cursorAt = layout.next
        for (i, ch) in state.text.enumerated() {
            layout.place(ch)
            if i + 1 == state.cursor { cursorAt = layout.next }
        }
        let end = layout.next
        if layout.pending { out += "\r\n" }
        // The terminal's cursor is now at `end`; move it back to the cursor.
        if end.row > cursorAt.row { out += "\u{1B}[\(end.row - cursorAt.row)A" }
        out += "\r"
        if cursorAt.column > 0 { out += "\u{1B}[\(cursorAt.column)C" }
        cursorRow = cursorAt.row
        return out
    }

    /// Prints `text` as its own line above the one being typed, then draws
    /// the typed line again below it.
    package mutating func printAbove(_ text: String, _ state: LineEditState, columns: Int) -> String {
        var out = erase()
        out += text + "\r\n"
        out += draw(state, columns: columns)
        return out
    }

    /// Where characters land as they are written.
    struct Layout {
        let width: Int
        var row = 0
        var column = 0

        /// The last character filled the row; the next one starts a new row.
        var pending: Bool { column >= width }

        /// Where the next character would start.
        var next: (row: Int, column: Int) { pending ? (row + 1, 0) : (row, column) }

        mutating func place(_ ch: Character) {
            let w = ch.displayWidth
            if pending || column + w > width {
                row += 1
                column = 0
            }
            column += w
        }
    }
}
