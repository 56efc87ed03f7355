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
/// - Terminal: a raw-mode line editor (`LineEditor`). An incoming line
///   clears the line being typed, prints itself, and redraws the prompt
///   with what was typed.
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

/// The line editor on a raw terminal: readline's common keys (arrows,
/// Home/End, Ctrl-A/E/B/F/P/N/U/K/W/D/L, Alt-B/F, Delete), history with
/// Up/Down, and lines wider than the terminal (see `LineView`). The keys
/// and the editing are pure types in FTFrontEnd, tested without a terminal.
final class LineEditor {
    private var keys = KeyDecoder()
    private var state: LineEditState
    private var view = LineView()
    private var original = termios()
    private let out = Console.stdout

    init() {
        state = LineEditState(byteLimit: LineBuffer.defaultCap)
        tcgetattr(0, &original)
        var raw = original
        // No echo, no kernel line editing, no signals from keys: we draw
        // the line ourselves and treat Ctrl-C as "quit".
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL)
        tcsetattr(0, TCSAFLUSH, &raw)
        TerminalRestore.save(original)
        out.write(view.draw(state, columns: out.width))
    }

    func restore() {
        var t = original
        tcsetattr(0, TCSAFLUSH, &t)
        out.write("\r\n")
    }

    func feed(_ bytes: UnsafeRawBufferPointer) -> [InputEvent] {
        if bytes.isEmpty { return [.eof] }
        var events: [InputEvent] = []
        for key in keys.feed(bytes) {
            switch state.apply(key) {
            case .none: break
            case .submit(let line):
                // The typed line stays on screen as it was sent.
                out.write(view.erase() + view.prompt + line + "\r\n")
                events.append(.line(Array(line.utf8)))
            case .endOfInput: events.append(.eof)
            case .interrupt: events.append(.quit)
            case .clearScreen: out.write(view.clearScreen())
            }
        }
        return events
    }

    func redraw(_ out: Console) {
        out.write(view.draw(state, columns: out.width))
    }

    /// Prints a line above the one being typed.
    func printAbove(_ text: String, _ out: Console) {
        out.write(view.printAbove(text, state, columns: out.width))
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
