/// A chain push: the receiver keeps its own copy and relays the stream to
/// `hops`, first to last. Sent after the handshake, before the manifest, on
/// every link of a chain; the last host gets an empty list.
public struct Relay: Equatable, Sendable {
    public static let maxHops = 64
    public static let maxHostLength = 255
    public static let frameCap: UInt32 = 2 + UInt32(maxHops * (1 + maxHostLength))

    /// `HOST:PORT` as the sender was given them.
    public var hops: [String]

    public init(hops: [String]) {
        self.hops = hops
    }

    /// Hosts are addresses or names with a port: letters, digits and
    /// `.-_:[]%`. Nothing else, so a hop name can go in any message as is.
    public static func isValidHost(_ host: String) -> Bool {
        let utf8 = host.utf8
        guard !utf8.isEmpty, utf8.count <= maxHostLength else { return false }
        return utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
                || c == UInt8(ascii: ":") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]") || c == UInt8(ascii: "%")
        }
    }

    func encode(into w: inout WireWriter) {
        w.u16(UInt16(hops.count))
        for h in hops {
            let b = Array(h.utf8)
            w.u8(UInt8(b.count))
            w.raw(b)
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> Relay {
        let count = Int(try r.u16("hop count"))
        guard count <= maxHops else {
            throw .invalidField(.relay, field: "hop count", reason: "\(count) is over the limit of \(maxHops)")
        }
        var hops: [String] = []
        for _ in 0..<count {
            let n = Int(try r.u8("host length"))
            let host = String(decoding: try r.bytes(n, "host"), as: UTF8.self)
            guard isValidHost(host) else {
                throw .invalidField(.relay, field: "host", reason: "'\(Escape.forMessage(bytes: Array(host.utf8)))' is not HOST:PORT")
            }
            hops.append(host)
        }
        return Relay(hops: hops)
    }
}

/// What became of the hosts after this one in a chain, sent by each chain
/// receiver to its upstream just before `done`. A host missing from the
/// list was never reached.
public struct HopReport: Equatable, Sendable {
    public struct Outcome: Equatable, Sendable {
        public var host: String
        public var ok: Bool
        public var files: UInt64
        public var bytes: UInt64
        /// Why it failed; empty when ok.
        public var message: String

        public init(host: String, ok: Bool, files: UInt64 = 0, bytes: UInt64 = 0, message: String = "") {
            self.host = host
            self.ok = ok
            self.files = files
            self.bytes = bytes
            self.message = message
        }
    }

    static let messageCap = 512
    public static let frameCap: UInt32 = 2 + UInt32(Relay.maxHops * (1 + 1 + Relay.maxHostLength + 16 + 2 + messageCap))

    public var outcomes: [Outcome]

    public init(outcomes: [Outcome]) {
        self.outcomes = outcomes
    }

    func encode(into w: inout WireWriter) {
        w.u16(UInt16(min(outcomes.count, Relay.maxHops)))
        for o in outcomes.prefix(Relay.maxHops) {
            let host = Array(o.host.utf8.prefix(Relay.maxHostLength))
            let msg = Array(o.message.utf8.prefix(Self.messageCap))
            w.u8(o.ok ? 1 : 0)
            w.u8(UInt8(host.count))
            w.raw(host)
            w.u64(o.files)
            w.u64(o.bytes)
            w.u16(UInt16(msg.count))
            w.raw(msg)
        }
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> HopReport {
        let count = Int(try r.u16("outcome count"))
        guard count <= Relay.maxHops else {
            throw .invalidField(.report, field: "outcome count", reason: "\(count) is over the limit of \(Relay.maxHops)")
        }
        var outcomes: [Outcome] = []
        for _ in 0..<count {
            let flag = try r.u8("status")
            guard flag <= 1 else { throw .invalidField(.report, field: "status", reason: "unknown status \(flag)") }
            let host = String(decoding: try r.bytes(Int(try r.u8("host length")), "host"), as: UTF8.self)
            guard Relay.isValidHost(host) else {
                throw .invalidField(.report, field: "host", reason: "'\(Escape.forMessage(bytes: Array(host.utf8)))' is not HOST:PORT")
            }
            let files = try r.u64("files")
            let bytes = try r.u64("bytes")
            let len = Int(try r.u16("message length"))
            guard len <= messageCap else {
                throw .invalidField(.report, field: "message length", reason: "\(len) is over \(messageCap)")
            }
            let msg = String(decoding: try r.bytes(len, "message"), as: UTF8.self)
            outcomes.append(Outcome(host: host, ok: flag == 1, files: files, bytes: bytes, message: msg))
        }
        return HopReport(outcomes: outcomes)
    }
}
