import FTWire

/// Text a peer sent, kept as bytes: it may not be valid UTF-8, and it is
/// only made safe to print at the last moment.
package struct ChatText: Sendable, Equatable {
    package let bytes: [UInt8]
    /// The line was longer than the cap and this is its beginning.
    package let truncated: Bool

    package init(_ bytes: [UInt8], truncated: Bool = false) {
        self.bytes = bytes
        self.truncated = truncated
    }

    package init(_ text: String) { self.init(Array(text.utf8)) }

    /// Controls, ANSI sequences and invalid bytes shown escaped.
    package var display: String { Escape.forChat(bytes: bytes) }

    package var isValidUTF8: Bool { String(validating: bytes, as: UTF8.self) != nil }
}

/// What the chat engine tells its front end. Peer-controlled strings arrive
/// as `ChatText` or already escaped.
package enum ChatEvent: Sendable, Equatable {
    case connected(peer: String)
    /// A line from `from` (an address or a /nick name).
    case message(from: String, text: ChatText)
    /// A datagram from someone other than the configured peer.
    case stranger(from: String, text: ChatText)
    case joined(who: String, count: Int)
    case left(who: String, count: Int, reason: String)
    case renamed(from: String, to: String)
    case notice(String)
    case disconnected(peer: String, reason: String)
    case error(String)
}

/// What the user did at the keyboard (or what stdin held).
package enum InputEvent: Sendable, Equatable {
    case line([UInt8])
    case eof
    /// Leave now (Ctrl-C on a terminal, or /quit).
    case quit
}

/// The front end's side of a chat: it turns stdin bytes into input events
/// (a line editor on a terminal, plain lines otherwise) and shows events.
package protocol ChatConsole: AnyObject {
    func feed(_ bytes: UnsafeRawBufferPointer) -> [InputEvent]
    func show(_ event: ChatEvent)
}

/// Stdin as plain lines, for pipes, files and tests.
package final class PlainLines {
    private var buffer = LineBuffer()
    package init() {}

    package func feed(_ bytes: UnsafeRawBufferPointer) -> [InputEvent] {
        if bytes.isEmpty {
            if case .line(let l)? = buffer.finish() { return [.line(l), .eof] }
            return [.eof]
        }
        return buffer.append(bytes).map {
            switch $0 {
            case .line(let l), .truncated(let l): return .line(l)
            }
        }
    }
}
