import FTWire

/// The chat room's rules, with no I/O: who is in, under which name, and who
/// hears what. The room feeds it joins, lines and leaves; it answers with
/// what to send to whom and what to show on the room's own console.
package struct RoomRoster<Member: Hashable & Sendable>: Sendable {
    package enum Action: Equatable, Sendable {
        /// Send this text to one member.
        case send(Member, String)
        /// Send this text to every member but `except`, in join order.
        case broadcast(String, except: Member?)
        /// Show this on the room's console.
        case show(ChatEvent)
        /// Stop reading from this member and close it once its queue is sent.
        case finish(Member)
    }

    package let maxMembers: Int
    /// How the room signs lines typed at its own console.
    package let operatorName: String
    private var names: [Member: String] = [:]
    /// Where each member connected from, and how many seats each host holds.
    private var hosts: [Member: String] = [:]
    private var seatsByHost: [String: Int] = [:]
    /// No host may hold more than this many seats: one host cannot fill
    /// the room.
    package var hostShare: Int { max(8, maxMembers / 8) }
    /// Join order, for /who and for a stable relay order.
    package private(set) var order: [Member] = []
    package private(set) var everJoined = false

    package init(maxMembers: Int, operatorName: String) {
        self.maxMembers = maxMembers
        self.operatorName = operatorName
    }

    package var count: Int { names.count }
    package func name(of m: Member) -> String? { names[m] }

    /// Why a newcomer from `host` gets no seat, or nil if it gets one. The
    /// room answers a refused one with this line and closes it at once.
    package func refusal(host: String) -> String? {
        if names.count >= maxMembers { return "* the room is full (\(maxMembers)); try again later\n" }
        if seatsByHost[host, default: 0] >= hostShare {
            return "* your host already holds \(hostShare) seats, its share of the room; try again later\n"
        }
        return nil
    }

    /// A member connected from `address` (its host is `host`).
    package mutating func join(_ m: Member, address: String, host: String? = nil) -> [Action] {
        let host = host ?? address
        if let why = refusal(host: host) { return [.send(m, why), .finish(m)] }
        names[m] = address
        hosts[m] = host
        seatsByHost[host, default: 0] += 1
        order.append(m)
        everJoined = true
        return [
            .show(.joined(who: address, count: names.count)),
            .send(m, "* you joined as \(address); \(names.count) in the room (/nick NAME to rename, /who to list, /quit to leave)\n"),
            .broadcast("* \(address) joined (\(names.count) in the room)\n", except: m),
        ]
    }

    /// A member's connection ended.
    package mutating func leave(_ m: Member, reason: String) -> [Action] {
        guard let name = names.removeValue(forKey: m) else { return [] }
        order.removeAll { $0 == m }
        if let host = hosts.removeValue(forKey: m) {
            seatsByHost[host, default: 1] -= 1
            if seatsByHost[host] == 0 { seatsByHost[host] = nil }
        }
        return [.show(.left(who: name, count: names.count, reason: reason)),
                .broadcast("* \(name) left (\(names.count) in the room)\n", except: nil)]
    }

    /// A line from a member (`truncated`: it was cut at the line cap).
    package mutating func line(_ bytes: [UInt8], truncated: Bool, from m: Member) -> [Action] {
        guard let name = names[m] else { return [] }
        if !truncated, let command = Command(bytes) { return run(command, from: m, name: name) }
        let text = ChatText(bytes, truncated: truncated)
        var out: [Action] = [.show(.message(from: name, text: text)), .broadcast("\(name): \(text.display)\n", except: m)]
        if truncated { out.append(.send(m, "* your line was over \(LineBuffer.defaultCap >> 10) KiB and was cut there\n")) }
        return out
    }

    /// A line typed at the room's own console.
    package func operatorLine(_ bytes: [UInt8]) -> [Action] {
        guard !bytes.isEmpty else { return [] }
        if bytes == Array("/who".utf8) { return [.show(.notice(who))] }
        return [.broadcast("\(operatorName): \(Escape.forChat(bytes: bytes))\n", except: nil)]
    }

    package var who: String {
        "in the room (\(names.count)): " + order.compactMap { names[$0] }.joined(separator: ", ")
    }

    enum Command {
        case nick(String)
        case who
        case quit

        init?(_ bytes: [UInt8]) {
            guard bytes.first == UInt8(ascii: "/"), let text = String(validating: bytes, as: UTF8.self) else { return nil }
            let parts = text.split(separator: " ", maxSplits: 1).map(String.init)
            switch parts[0] {
            case "/nick" where parts.count == 2: self = .nick(parts[1].trimmed)
            case "/who" where parts.count == 1: self = .who
            case "/quit" where parts.count == 1: self = .quit
            default: return nil
            }
        }
    }

    private mutating func run(_ command: Command, from m: Member, name old: String) -> [Action] {
        switch command {
        case .who:
            return [.send(m, "* \(who)\n")]
        case .quit:
            return [.send(m, "* bye\n"), .finish(m)]
        case .nick(let name):
            guard Self.validNick(name) else {
                return [.send(m, "* a name is 1 to 32 letters, digits or . _ - (no spaces)\n")]
            }
            // Names are unique, ignoring case, and the room's own is
            // reserved: nobody may post as the operator or as another member.
            let key = name.lowercased()
            if key == operatorName.lowercased() {
                return [.send(m, "* '\(name)' is the room's own name; pick another\n")]
            }
            if names.contains(where: { $0.key != m && $0.value.lowercased() == key }) {
                return [.send(m, "* '\(name)' is taken in this room; pick another\n")]
            }
            names[m] = name
            return [.show(.renamed(from: old, to: name)), .broadcast("* \(old) is now \(name)\n", except: nil)]
        }
    }

    package static func validNick(_ s: String) -> Bool {
        guard (1...32).contains(s.count) else { return false }
        return s.unicodeScalars.allSatisfy { c in
            c.properties.isAlphabetic || c.properties.numericType != nil || "._-".unicodeScalars.contains(c)
        }
    }
}
