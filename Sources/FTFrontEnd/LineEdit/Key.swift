/// A key press, decoded from what a terminal in raw mode sends.
package enum Key: Equatable, Sendable {
    case text(Unicode.Scalar)
    case enter
    case backspace
    case delete
    case left
    case right
    case home
    case end
    case up
    case down
    case wordLeft
    case wordRight
    /// Ctrl-U: the text before the cursor.
    case killToStart
    /// Ctrl-K: the text from the cursor on.
    case killToEnd
    /// Ctrl-W: the word before the cursor.
    case killWord
    /// Ctrl-D: end of input on an empty line, delete under the cursor otherwise.
    case endOfInput
    /// Ctrl-C.
    case interrupt
    /// Ctrl-L.
    case redraw
}

/// Turns raw terminal bytes into keys: UTF-8 text, control keys, and the
/// escape sequences of xterm-like terminals (CSI and SS3 forms, with or
/// without modifiers). It keeps a partial sequence or character across
/// reads, so a key split between two reads still decodes; what it does not
/// know is dropped whole, never typed as text.
package struct KeyDecoder: Sendable {
    private enum State: Sendable {
        case ground
        /// Inside a UTF-8 character: the scalar so far and bytes still due.
        case utf8(UInt32, remaining: Int)
        /// After ESC.
        case escape
        /// After ESC [ : parameter bytes so far.
        case csi([UInt8])
        /// After ESC O.
        case ss3
    }

    private var state = State.ground

    package init() {}

    package mutating func feed(_ bytes: some Sequence<UInt8>) -> [Key] {
        var keys: [Key] = []
        for b in bytes { if let k = step(b) { keys.append(k) } }
        return keys
    }

    private mutating func step(_ b: UInt8) -> Key? {
        switch state {
        case .ground:
            return ground(b)
        case .utf8(let partial, let remaining):
            guard b & 0xC0 == 0x80 else {
                // A broken character: drop it and read this byte afresh.
                state = .ground
                return ground(b)
            }
            let value = partial << 6 | UInt32(b & 0x3F)
            if remaining > 1 {
                state = .utf8(value, remaining: remaining - 1)
                return nil
            }
            state = .ground
            return Unicode.Scalar(value).map(Key.text)
        case .escape:
            switch b {
            case UInt8(ascii: "["): state = .csi([]); return nil
            case UInt8(ascii: "O"): state = .ss3; return nil
            case UInt8(ascii: "b"): state = .ground; return .wordLeft
            case UInt8(ascii: "f"): state = .ground; return .wordRight
            case 0x7F: state = .ground; return .killWord
            case 0x1B: return nil
            default: state = .ground; return nil
            }
        case .csi(var params):
            if (0x20...0x3F).contains(b) {
                // Parameters and intermediates; a runaway sequence is cut off.
                if params.count < 16 { params.append(b) }
                state = .csi(params)
                return nil
            }
            state = .ground
            return Self.csi(final: b, params: params)
        case .ss3:
            state = .ground
            return Self.cursorKey(b)
        }
    }

    private mutating func ground(_ b: UInt8) -> Key? {
        switch b {
        case 0x0D, 0x0A: return .enter
        case 0x7F, 0x08: return .backspace
        case 0x01: return .home
        case 0x05: return .end
        case 0x02: return .left
        case 0x06: return .right
        case 0x10: return .up
        case 0x0E: return .down
        case 0x15: return .killToStart
        case 0x0B: return .killToEnd
        case 0x17: return .killWord
        case 0x04: return .endOfInput
        case 0x03: return .interrupt
        case 0x0C: return .redraw
        case 0x1B: state = .escape; return nil
        case 0..<0x20: return nil
        case 0x20..<0x80: return .text(Unicode.Scalar(b))
        case 0xC2...0xDF: state = .utf8(UInt32(b & 0x1F), remaining: 1); return nil
        case 0xE0...0xEF: state = .utf8(UInt32(b & 0x0F), remaining: 2); return nil
        case 0xF0...0xF4: state = .utf8(UInt32(b & 0x07), remaining: 3); return nil
        default: return nil
        }
    }

    private static func cursorKey(_ b: UInt8) -> Key? {
        switch b {
        case UInt8(ascii: "A"): return .up
        case UInt8(ascii: "B"): return .down
        case UInt8(ascii: "C"): return .right
        case UInt8(ascii: "D"): return .left
        case UInt8(ascii: "H"): return .home
        case UInt8(ascii: "F"): return .end
        default: return nil
        }
    }

    private static func csi(final: UInt8, params: [UInt8]) -> Key? {
        let fields = params.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false)
            .map { Int(String(decoding: $0, as: UTF8.self)) }
        // ESC [ 1 ; 5 D is Ctrl-Left: a word, as in readline.
        let modified = fields.count >= 2 && (fields[1] ?? 1) > 1
        if final == UInt8(ascii: "~") {
            switch fields.first ?? nil {
            case 1, 7: return .home
            case 4, 8: return .end
            case 3: return .delete
            default: return nil
            }
        }
        let key = cursorKey(final)
        if modified, key == .left { return .wordLeft }
        if modified, key == .right { return .wordRight }
        return key
    }
}
