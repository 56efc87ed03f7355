import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `ft chat tcp --listen`: a room. Every client's line is shown here and
/// relayed to the others as `name: text`, already escaped, so plain `nc`
/// clients see safe text too. Lines typed here go to everyone. One ring,
/// one thread, any number of clients.
public final class ChatRoom {
    public struct Config: Sendable {
        public var listen: Endpoint
        /// Exit when the last client leaves (after at least one came).
        public var once: Bool
        /// How the room signs lines typed at the server.
        public var name: String
        public var maxMembers: Int
        public var engine: EnginePreference

        public init(listen: Endpoint, once: Bool = false, name: String = "server", maxMembers: Int = 1024,
                    engine: EnginePreference = .auto) {
            self.listen = listen
            self.once = once
            self.name = name
            self.maxMembers = maxMembers
            self.engine = engine
        }
    }

    final class Member {
        let connection: LineConnection
        let address: String
        var name: String
        init(connection: LineConnection) {
            self.connection = connection
            self.address = connection.peer
            self.name = connection.peer
        }
    }

    public let config: Config
    public let address: SocketAddress
    let loop: EventLoop
    private let acceptor: Acceptor
    private let stopSignal: StopSignal
    private let console: ChatConsole
    private var stdin: StdinReader!
    private var members: [ObjectIdentifier: Member] = [:]
    /// Join order, for /who and for a stable relay order.
    private var order: [ObjectIdentifier] = []
    private var everJoined = false
    private var stopping = false

    public init(config: Config, console: ChatConsole, logger: Logger) throws(IOError) {
        self.config = config
        self.console = console
        loop = try EventLoop(backend: try Engine.makeBackend(config.engine, logger: logger), logger: logger)
        acceptor = try Acceptor(config.listen, loop: loop)
        stopSignal = try StopSignal(loop: loop)
        address = acceptor.address
    }

    /// Writes to this fd (from a signal handler or a thread) end the room.
    public var stopDescriptor: CInt { stopSignal.descriptor }

    public var backend: BackendKind { loop.backend.kind }

    public func run() throws(IOError) {
        ResourceLimits.raiseOpenFiles()
        stdin = StdinReader(loop: loop, console: console) { [unowned self] events in input(events) }
        stdin.start(loop)
        acceptor.start(onAccept: { [unowned self] in admit($0) },
                       onError: { [unowned self] in console.show(.error($0.description)) })
        stopSignal.start { [unowned self] in stop("the room was closed") }
        try loop.run { stopping && members.isEmpty }
    }

    private func admit(_ fd: CInt) {
        let peer = Socket.peerAddress(fd)?.description ?? "unknown"
        let conn = LineConnection(fd: fd, peer: peer, loop: loop)
        let m = Member(connection: conn)
        conn.delegate = self
        conn.start()
        if members.count >= config.maxMembers {
            conn.send(Array("* the room is full (\(config.maxMembers)); try again later\n".utf8))
            conn.finishWriting()
            return
        }
        members[ObjectIdentifier(conn)] = m
        order.append(ObjectIdentifier(conn))
        everJoined = true
        console.show(.joined(who: m.name, count: members.count))
        conn.send(Array("* you joined as \(m.name); \(members.count) in the room (/nick NAME to rename, /who to list, /quit to leave)\n".utf8))
        broadcast("* \(m.name) joined (\(members.count) in the room)\n", except: m)
    }

    private func broadcast(_ text: String, except: Member? = nil) {
        let bytes = Array(text.utf8)
        for id in order where id != except.map({ ObjectIdentifier($0.connection) }) {
            members[id]?.connection.send(bytes)
        }
    }

    // MARK: Input from the server's own keyboard

    private func input(_ events: [InputEvent]) {
        for e in events {
            switch e {
            case .line(let bytes):
                guard !bytes.isEmpty else { continue }
                if bytes == Array("/who".utf8) {
                    console.show(.notice(who))
                    continue
                }
                broadcast("\(config.name): \(Escape.forChat(bytes: bytes))\n")
            case .eof:
                // The room stays open without a keyboard; scripts run it so.
                break
            case .quit:
                stop("the server left")
            }
        }
    }

    private var who: String {
        "in the room (\(members.count)): " + order.compactMap { members[$0]?.name }.joined(separator: ", ")
    }

    private func stop(_ reason: String) {
        guard !stopping else { return }
        stopping = true
        acceptor.stop()
        for id in order { members[id]?.connection.close(reason) }
        if members.isEmpty { loop.stop() }
    }
}

extension ChatRoom: LineConnectionDelegate {
    func connection(_ c: LineConnection, received item: LineBuffer.Item) {
        guard let m = members[ObjectIdentifier(c)] else { return }
        let (bytes, cut): ([UInt8], Bool) = {
            switch item {
            case .line(let b): return (b, false)
            case .truncated(let b): return (b, true)
            }
        }()
        if !cut, let command = Command(bytes) {
            run(command, from: m)
            return
        }
        let text = ChatText(bytes, truncated: cut)
        console.show(.message(from: m.name, text: text))
        broadcast("\(m.name): \(text.display)\n", except: m)
        if cut {
            c.send(Array("* your line was over \(LineBuffer.defaultCap >> 10) KiB and was cut there\n".utf8))
        }
    }

    func connectionClosed(_ c: LineConnection, reason: String) {
        guard let m = members.removeValue(forKey: ObjectIdentifier(c)) else { return }
        order.removeAll { $0 == ObjectIdentifier(c) }
        console.show(.left(who: m.name, count: members.count, reason: reason))
        broadcast("* \(m.name) left (\(members.count) in the room)\n")
        if config.once, everJoined, members.isEmpty { stop("the last client left") }
        if stopping, members.isEmpty { loop.stop() }
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

    private func run(_ command: Command, from m: Member) {
        switch command {
        case .who:
            m.connection.send(Array("* \(who)\n".utf8))
        case .quit:
            m.connection.send(Array("* bye\n".utf8))
            m.connection.finishWriting()
        case .nick(let name):
            guard Self.validNick(name) else {
                m.connection.send(Array("* a name is 1 to 32 letters, digits or . _ - (no spaces)\n".utf8))
                return
            }
            let old = m.name
            m.name = name
            console.show(.renamed(from: old, to: name))
            broadcast("* \(old) is now \(name)\n")
        }
    }

    static func validNick(_ s: String) -> Bool {
        guard (1...32).contains(s.count) else { return false }
        return s.unicodeScalars.allSatisfy { c in
            (c.properties.isAlphabetic || c.properties.numericType != nil || "._-".unicodeScalars.contains(c))
        }
    }
}
