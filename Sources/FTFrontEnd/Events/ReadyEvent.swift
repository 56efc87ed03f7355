/// Once, when a long-running command listens or binds: `ft recv`,
/// `ft chat tcp --listen` and `ft chat udp` all say it with these fields,
/// so one script can wait for any of them.
package struct ReadyEvent: EventBody {
    package static var event: String { "ready" }
    /// The bound address, `ADDR:PORT` (`[ADDR]:PORT` for IPv6).
    package var listen: String
    /// Addresses a peer can use to reach us (this host's interfaces when
    /// bound to all of them).
    package var sendTo: [String]
    /// `ft chat udp`: where lines go. Null elsewhere.
    package var peer: String?
    /// `ft recv`: the absolute destination, or `-` with --stdout. Null in chat.
    package var dir: String?
    /// `io_uring` or `poll`.
    package var engine: String
    /// `ft recv`: the one-time code if ft made it, else null (a code from
    /// FT_CODE or a file is never echoed).
    package var code: String?
    /// `ft recv`: `made`, `FT_CODE`, `code-file` or `none`. Null in chat.
    package var auth: String?
    /// What the human output says.
    package var detail: String

    enum CodingKeys: String, CodingKey {
        case listen
        case sendTo = "send_to"
        case peer, dir, engine, code, auth, detail
    }

    package init(listen: String, sendTo: [String], peer: String? = nil, dir: String? = nil, engine: String,
                 code: String? = nil, auth: String? = nil, detail: String) {
        self.listen = listen
        self.sendTo = sendTo
        self.peer = peer
        self.dir = dir
        self.engine = engine
        self.code = code
        self.auth = auth
        self.detail = detail
    }
}
