import Testing
@testable import FTFrontEnd

/// Types bytes as a terminal sends them, in as many reads as given.
func typed(_ reads: [String], into state: inout LineEditState, decoder: inout KeyDecoder) -> [LineEditState.Action] {
    var actions: [LineEditState.Action] = []
    for r in reads {
        for key in decoder.feed(Array(r.utf8)) {
            let a = state.apply(key)
            if a != .none { actions.append(a) }
        }
    }
    return actions
}

func edited(_ reads: String...) -> (line: String, cursor: Int, actions: [LineEditState.Action]) {
    var state = LineEditState()
    var decoder = KeyDecoder()
    let actions = typed(reads, into: &state, decoder: &decoder)
    return (state.line, state.cursor, actions)
}

@Suite struct LineEditTests {
    /// The reported defect: Left and Ctrl-A were dropped and later keys
    /// typed at the end ("half-typed lineX^").
    @Test func leftAndCtrlAMoveTheCursor() {
        let r = edited("half-typed line", "\u{1B}[D", "X", "\u{01}", "^")
        #expect(r.line == "^half-typed linXe" && r.cursor == 1)
        // The same arrow split over three reads, and in the SS3 form.
        #expect(edited("ab", "\u{1B}", "[", "D", "X").line == "aXb")
        #expect(edited("ab", "\u{1B}OD", "X").line == "aXb")
    }

    @Test func homeEndAndDeleteInEveryCommonForm() {
        for home in ["\u{1B}[H", "\u{1B}OH", "\u{1B}[1~", "\u{1B}[7~", "\u{01}"] {
            for end in ["\u{1B}[F", "\u{1B}OF", "\u{1B}[4~", "\u{1B}[8~", "\u{05}"] {
                let r = edited("bcd", home, "a", end, "e")
                #expect(r.line == "abcde", "home \(Array(home.utf8)) end \(Array(end.utf8))")
            }
        }
        #expect(edited("abc", "\u{01}", "\u{1B}[3~").line == "bc")
        #expect(edited("abc", "\u{01}", "\u{04}").line == "bc", "Ctrl-D deletes under the cursor on a non-empty line")
        #expect(edited("\u{04}").actions == [.endOfInput])
    }

    @Test func wordsAndKills() {
        #expect(edited("one two three", "\u{17}").line == "one two ")
        #expect(edited("one two three", "\u{1B}[1;5D", "\u{1B}[1;5D", "\u{0B}").line == "one ")
        #expect(edited("one two three", "\u{1B}b", "\u{15}").line == "three")
        #expect(edited("one two", "\u{01}", "\u{1B}f", "!").line == "one! two")
        #expect(edited("abc", "\u{1B}[D", "\u{7F}").line == "ac")
    }

    @Test func historyWalksBackAndComesBackToTheDraft() {
        var state = LineEditState()
        var decoder = KeyDecoder()
        let sent = typed(["one\r", "two\r", "two\r", "dra"], into: &state, decoder: &decoder)
        #expect(sent == [.submit("one"), .submit("two"), .submit("two")])
        #expect(state.history == ["one", "two"], "a repeat is kept once")
        _ = typed(["\u{1B}[A"], into: &state, decoder: &decoder)
        #expect(state.line == "two" && state.cursor == 3)
        _ = typed(["\u{1B}[A", "\u{1B}[A"], into: &state, decoder: &decoder)
        #expect(state.line == "one", "Up stops at the oldest")
        _ = typed(["\u{1B}[B"], into: &state, decoder: &decoder)
        #expect(state.line == "two")
        _ = typed(["\u{0E}"], into: &state, decoder: &decoder)
        #expect(state.line == "dra", "Down past the newest gives back the line being typed")
        _ = typed(["\u{10}", "!\r"], into: &state, decoder: &decoder)
        #expect(state.history.last == "two!" && state.line.isEmpty)
    }

    @Test func charactersNotBytes() {
        let bytes = Array("héllo 你好 👋".utf8)
        var state = LineEditState()
        var decoder = KeyDecoder()
        // Split inside every multi-byte character.
        for b in bytes { for k in decoder.feed([b]) { _ = state.apply(k) } }
        #expect(state.line == "héllo 你好 👋" && state.text.count == 10)
        _ = state.apply(.backspace)
        _ = state.apply(.left)
        _ = state.apply(.backspace)
        #expect(state.line == "héllo 你 ")
        #expect(edited("e\u{301}", "\u{7F}").line.isEmpty, "a combining mark is part of its character")
        var raw = LineEditState()
        var rawDecoder = KeyDecoder()
        for k in rawDecoder.feed([0x61, 0xFF, 0xC3, 0x62, 0xE4, 0xBD]) { _ = raw.apply(k) }
        #expect(raw.line == "ab", "invalid UTF-8 is not typed")
    }

    @Test func unknownSequencesAreDroppedWhole() {
        #expect(edited("a", "\u{1B}[15~", "\u{1B}[200~", "b", "\u{1B}[201~", "\u{1B}[99;99;99Z", "c").line == "abc")
        #expect(edited("a", "\u{1B}x", "b").line == "ab")
        #expect(edited("a\u{07}\u{1A}b").line == "ab", "other controls are not typed")
    }

    @Test func theLineStopsAtItsLimit() {
        var state = LineEditState(byteLimit: 4)
        for s in "ab你".unicodeScalars { _ = state.apply(.text(s)) }
        #expect(state.line == "ab")
        _ = state.apply(.text("c"))
        _ = state.apply(.text("d"))
        _ = state.apply(.text("e"))
        #expect(state.line == "abcd")
    }
}
