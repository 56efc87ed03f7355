import FTChat
import FTFrontEnd
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// How `ft chat` shows events and reads the keyboard.
///
/// - JSON: one NDJSON event per line, stdin read as plain lines.
/// - Plain (stdin or stdout not a terminal): one line per event, written at
///   once, stdin read as plain lines. This is what scripts and tests see.
/// - Terminal: a raw-mode line editor. An incoming line clears the line
///   being typed, prints itself, and redraws the prompt with what was typed.
final class ChatTerminal: ChatConsole {
    enum Role {
        case room
        case client
        case udp
    }

    let role: Role
    let json: Bool
    private let out = Console.stdout
    private let plain = PlainLines()
    private let editor: LineEditor?

    init(role: Role, json: Bool) {
        self.role = role
        self.json = json
        editor = !json && isatty(0) == 1 && isatty(1) == 1 ? LineEditor() : nil
    }

    func feed(_ bytes: UnsafeRawBufferPointer) -> [InputEvent] {
        guard let editor else { return plain.feed(bytes) }
        let events = editor.feed(bytes)
        editor.redraw(out)
        return events
    }

    func show(_ event: ChatEvent) {
        if json {
            out.line(Self.jsonLine(event))
            return
        }
        let text = render(event)
        if let editor {
            editor.printAbove(text, out)
        } else {
            out.line(text)
        }
    }

    /// Where we listen or what we are bound to, once, before any event.
    func ready(_ r: ReadyEvent) {
        if json {
            out.line(r.line)
        } else {
            show(.notice(r.detail))
        }
    }

    func restore() { editor?.restore() }

    func render(_ event: ChatEvent) -> String {
        switch event {
        case .connected(let peer): return "* connected to \(peer) (type lines; /quit or Ctrl-D leaves)"
        case .message(let from, let text):
            let cut = text.truncated ? " [cut at \(LineBuffer.defaultCap >> 10) KiB]" : ""
            return role == .room ? "[\(from)] \(text.display)\(cut)" : text.display + cut
        case .stranger(let from, let text):
            return "[from \(from)] \(text.display)"
        case .joined(let who, let count): return "* \(who) joined (\(count) in the room)"
        case .left(let who, let count, let reason): return "* \(who) left (\(count) in the room): \(reason)"
        case .renamed(let from, let to): return "* \(from) is now \(to)"
        case .notice(let s): return "* \(s)"
        case .disconnected(let peer, let reason): return "* \(peer): \(reason)"
        case .error(let s): return "ft chat: \(s)"
        }
    }

    static func jsonLine(_ event: ChatEvent) -> String {
        func message(_ from: String, _ t: ChatText, stranger: Bool) -> String {
            let raw = String(validating: t.bytes, as: UTF8.self)
            return MessageEvent(from: from, text: raw ?? t.display, validUtf8: raw != nil, truncated: t.truncated, stranger: stranger).line
        }
        switch event {
        case .connected(let peer): return ConnectedEvent(peer: peer).line
        case .message(let from, let t): return message(from, t, stranger: false)
        case .stranger(let from, let t): return message(from, t, stranger: true)
        case .joined(let who, let count): return JoinEvent(who: who, count: count).line
        case .left(let who, let count, let reason): return LeaveEvent(who: who, count: count, reason: reason).line
        case .renamed(let from, let to): return RenameEvent(from: from, to: to).line
        case .notice(let s): return NoticeEvent(text: s).line
        case .disconnected(let peer, let reason): return DisconnectedEvent(peer: peer, reason: reason).line
        case .error(let s): return ErrorEvent(message: s).line
        }
    }
}

/// A minimal line editor for a raw terminal: printable text (UTF-8),
/// Backspace, Ctrl-U, Enter, Ctrl-D on an empty line (end), Ctrl-C (quit).
/// Escape sequences (arrows and the like) are ignored.
final class LineEditor {
    private var line: [UInt8] = []
    private var original = termios()
    private var inEscape = false
    private var escapeStarted = false
    private let prompt = "> "

    init() {
        tcgetattr(0, &original)
        var raw = original
        // No echo, no kernel line editing, no signals from keys: we draw
        // the line ourselves and treat Ctrl-C as "quit".
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL)
        tcsetattr(0, TCSAFLUSH, &raw)
        TerminalRestore.save(original)
        Console.stdout.write(prompt)
    }

    func restore() {
        var t = original
        tcsetattr(0, TCSAFLUSH, &t)
        Console.stdout.write("\r\n")
    }

    func feed(_ bytes: UnsafeRawBufferPointer) -> [InputEvent] {
        if bytes.isEmpty { return [.eof] }
        var events: [InputEvent] = []
        for b in bytes {
            if inEscape {
                // ESC [ ... final byte, or ESC + one byte.
                if !escapeStarted, b == UInt8(ascii: "[") { escapeStarted = true; continue }
                if !escapeStarted || (0x40...0x7E).contains(b) { inEscape = false; escapeStarted = false }
                continue
            }
            switch b {
            case 0x0D, 0x0A:
                Console.stdout.write("\r\n")
                events.append(.line(line))
                line.removeAll()
            case 0x7F, 0x08:
                // Remove one whole character, not one byte of it.
                while let last = line.popLast(), last & 0xC0 == 0x80 {}
            case 0x15:
                line.removeAll()
            case 0x03:
                events.append(.quit)
            case 0x04:
                if line.isEmpty { events.append(.eof) }
            case 0x1B:
                inEscape = true
            case 0..<0x20:
                break
            default:
                if line.count < LineBuffer.defaultCap { line.append(b) }
            }
        }
        return events
    }

    func redraw(_ out: Console) {
        out.write("\r\u{1B}[2K" + prompt + String(decoding: line, as: UTF8.self))
    }

    /// Prints a line above the one being typed.
    func printAbove(_ text: String, _ out: Console) {
        out.write("\r\u{1B}[2K" + text + "\r\n" + prompt + String(decoding: line, as: UTF8.self))
    }
}

/// Puts the terminal back if we are killed while it is in raw mode.
enum TerminalRestore {
    nonisolated(unsafe) static var saved = termios()

    static func save(_ t: termios) {
        saved = t
        for sig in [SIGTERM, SIGHUP] {
            signal(sig) { s in
                tcsetattr(0, TCSAFLUSH, &TerminalRestore.saved)
                signal(s, SIG_DFL)
                raise(s)
            }
        }
    }
}
