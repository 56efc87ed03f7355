/// The line being typed, its cursor and the history: what a key does,
/// without a terminal. `LineView` draws it.
package struct LineEditState: Sendable {
    /// What a key asks of the caller.
    package enum Action: Equatable, Sendable {
        case none
        /// A finished line (also added to the history).
        case submit(String)
        /// Ctrl-D on an empty line.
        case endOfInput
        case interrupt
        /// Redraw from a clean screen (Ctrl-L).
        case clearScreen
    }

    package private(set) var text: [Character] = []
    /// Characters before the cursor.
    package private(set) var cursor = 0
    package private(set) var history: [String] = []
    /// Where Up/Down are in the history; `history.count` is the line being
    /// typed, kept in `draft` while older lines are shown.
    private var recall = 0
    private var draft: [Character] = []
    let historyLimit: Int
    /// Longest line in UTF-8 bytes; typing past it is ignored.
    let byteLimit: Int
    private var bytes = 0

    package init(historyLimit: Int = 500, byteLimit: Int = 64 << 10) {
        self.historyLimit = historyLimit
        self.byteLimit = byteLimit
    }

    package var line: String { String(text) }

    package mutating func apply(_ key: Key) -> Action {
        switch key {
        case .text(let scalar): insert(scalar)
        case .enter:
            let line = self.line
            if !line.isEmpty, history.last != line {
                history.append(line)
                if history.count > historyLimit { history.removeFirst(history.count - historyLimit) }
            }
            set([], cursor: 0)
            recall = history.count
            draft = []
            return .submit(line)
        case .backspace:
            if cursor > 0 { remove(cursor - 1..<cursor) }
        case .delete:
            if cursor < text.count { remove(cursor..<cursor + 1) }
        case .endOfInput:
            if text.isEmpty { return .endOfInput }
            if cursor < text.count { remove(cursor..<cursor + 1) }
        case .left: cursor = max(0, cursor - 1)
        case .right: cursor = min(text.count, cursor + 1)
        case .home: cursor = 0
        case .end: cursor = text.count
        case .wordLeft: cursor = wordStart(before: cursor)
        case .wordRight: cursor = wordEnd(after: cursor)
        case .killToStart: remove(0..<cursor)
        case .killToEnd: remove(cursor..<text.count)
        case .killWord: remove(wordStart(before: cursor)..<cursor)
        case .up:
            guard recall > 0 else { break }
            if recall == history.count { draft = text }
            recall -= 1
            let shown = Array(history[recall])
            set(shown, cursor: shown.count)
        case .down:
            guard recall < history.count else { break }
            recall += 1
            let shown = recall == history.count ? draft : Array(history[recall])
            set(shown, cursor: shown.count)
        case .interrupt: return .interrupt
        case .redraw: return .clearScreen
        }
        return .none
    }

    private mutating func insert(_ scalar: Unicode.Scalar) {
        let size = UTF8.width(scalar)
        guard bytes + size <= byteLimit else { return }
        bytes += size
        // A combining mark joins the character before it.
        if cursor > 0 {
            var joined = String(text[cursor - 1])
            joined.unicodeScalars.append(scalar)
            if joined.count == 1 {
                text[cursor - 1] = Character(joined)
                return
            }
        }
        text.insert(Character(scalar), at: cursor)
        cursor += 1
    }

    private mutating func remove(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        bytes -= text[range].reduce(0) { $0 + $1.utf8.count }
        text.removeSubrange(range)
        if cursor >= range.upperBound { cursor -= range.count } else if cursor > range.lowerBound { cursor = range.lowerBound }
    }

    private mutating func set(_ new: [Character], cursor: Int) {
        text = new
        bytes = new.reduce(0) { $0 + $1.utf8.count }
        self.cursor = cursor
    }

    private func wordStart(before i: Int) -> Int {
        var j = i
        while j > 0, text[j - 1].isWhitespace { j -= 1 }
        while j > 0, !text[j - 1].isWhitespace { j -= 1 }
        return j
    }

    private func wordEnd(after i: Int) -> Int {
        var j = i
        while j < text.count, text[j].isWhitespace { j += 1 }
        while j < text.count, !text[j].isWhitespace { j += 1 }
        return j
    }
}
