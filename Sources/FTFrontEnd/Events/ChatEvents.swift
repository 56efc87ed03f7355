// What `ft chat --json` prints besides `ready` and `error` (docs/events.md).
// Peer text is the peer's bytes as UTF-8, never escaped for a terminal.

package struct ConnectedEvent: EventBody {
    package static var event: String { "connected" }
    package var peer: String

    package init(peer: String) { self.peer = peer }
}

/// A line from a peer.
package struct MessageEvent: EventBody {
    package static var event: String { "message" }
    /// An address, or the name a room client chose with /nick.
    package var from: String
    /// The text; where it is not valid UTF-8, shown escaped (\xFF).
    package var text: String
    package var validUtf8: Bool
    /// The line was longer than the cap and this is its beginning.
    package var truncated: Bool
    /// `ft chat udp`: the datagram came from someone but the peer.
    package var stranger: Bool

    enum CodingKeys: String, CodingKey {
        case from, text
        case validUtf8 = "valid_utf8"
        case truncated, stranger
    }

    package init(from: String, text: String, validUtf8: Bool, truncated: Bool, stranger: Bool) {
        self.from = from
        self.text = text
        self.validUtf8 = validUtf8
        self.truncated = truncated
        self.stranger = stranger
    }
}

package struct JoinEvent: EventBody {
    package static var event: String { "join" }
    package var who: String
    /// How many are in the room now.
    package var count: Int

    package init(who: String, count: Int) {
        self.who = who
        self.count = count
    }
}

package struct LeaveEvent: EventBody {
    package static var event: String { "leave" }
    package var who: String
    package var count: Int
    package var reason: String

    package init(who: String, count: Int, reason: String) {
        self.who = who
        self.count = count
        self.reason = reason
    }
}

package struct RenameEvent: EventBody {
    package static var event: String { "rename" }
    package var from: String
    package var to: String

    package init(from: String, to: String) {
        self.from = from
        self.to = to
    }
}

package struct NoticeEvent: EventBody {
    package static var event: String { "notice" }
    package var text: String

    package init(text: String) { self.text = text }
}

package struct DisconnectedEvent: EventBody {
    package static var event: String { "disconnected" }
    package var peer: String
    package var reason: String

    package init(peer: String, reason: String) {
        self.peer = peer
        self.reason = reason
    }
}
