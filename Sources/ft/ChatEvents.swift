import FTFrontEnd

// What `ft chat --json` prints besides `ready` and `error` (docs/events.md);
// only `ft` makes them, so they live beside the chat terminal.
// Peer text is the peer's bytes as UTF-8, never escaped for a terminal.

struct ConnectedEvent: EventBody {
    static var event: String { "connected" }
    var peer: String
}

/// A line from a peer.
struct MessageEvent: EventBody {
    static var event: String { "message" }
    /// An address, or the name a room client chose with /nick.
    var from: String
    /// The text; where it is not valid UTF-8, shown escaped (\xFF).
    var text: String
    var validUtf8: Bool
    /// The line was longer than the cap and this is its beginning.
    var truncated: Bool
    /// `ft chat udp`: the datagram came from someone but the peer.
    var stranger: Bool

    enum CodingKeys: String, CodingKey {
        case from, text
        case validUtf8 = "valid_utf8"
        case truncated, stranger
    }
}

struct JoinEvent: EventBody {
    static var event: String { "join" }
    var who: String
    /// How many are in the room now.
    var count: Int
}

struct LeaveEvent: EventBody {
    static var event: String { "leave" }
    var who: String
    var count: Int
    var reason: String
}

struct RenameEvent: EventBody {
    static var event: String { "rename" }
    var from: String
    var to: String
}

struct NoticeEvent: EventBody {
    static var event: String { "notice" }
    var text: String
}

struct DisconnectedEvent: EventBody {
    static var event: String { "disconnected" }
    var peer: String
    var reason: String
}
