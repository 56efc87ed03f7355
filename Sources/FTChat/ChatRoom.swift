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
package final class ChatRoom {
    package struct Config: Sendable {
        package var listen: Endpoint
        /// Exit when the last client leaves (after at least one came).
        package var once: Bool
        /// How the room signs lines typed at the server.
        package var name: String
        package var maxMembers: Int
        package var engine: EnginePreference

        package init(listen: Endpoint, once: Bool = false, name: String = "server", maxMembers: Int = 1024,
                    engine: EnginePreference = .auto) {
            self.listen = listen
            self.once = once
            self.name = name
            self.maxMembers = maxMembers
            self.engine = engine
        }
    }

    package let config: Config
    package let address: SocketAddress
    let loop: EventLoop
    private let acceptor: Acceptor
    private let stopSignal: StopSignal
    private let console: ChatConsole
    private var stdin: StdinReader!
    private var connections: [ObjectIdentifier: LineConnection] = [:]
    private var roster: RoomRoster<ObjectIdentifier>
    private var stopping = false

    package init(config: Config, console: ChatConsole, logger: Logger) throws(IOError) {
        self.config = config
        self.console = console
        loop = try EventLoop(backend: try Engine.makeBackend(config.engine, logger: logger), logger: logger)
        // People wait on every line: answer without a sleeping thread's wake-up.
        loop.backend.idleSpinNanoseconds = URingBackend.latencySpinNanoseconds
        acceptor = try Acceptor(config.listen, loop: loop)
        stopSignal = try StopSignal(loop: loop)
        address = acceptor.address
        roster = RoomRoster(maxMembers: config.maxMembers, operatorName: config.name)
    }

    /// Writes to this fd (from a signal handler or a thread) end the room.
    package var stopDescriptor: CInt { stopSignal.descriptor }

    package var backend: BackendKind { loop.backend.kind }

    package func run() throws(IOError) {
        ResourceLimits.raiseOpenFiles()
        stdin = StdinReader(loop: loop, console: console) { [unowned self] events in input(events) }
        stdin.start(loop)
        acceptor.start(onAccept: { [unowned self] in admit($0) },
                       onError: { [unowned self] in console.show(.error($0.description)) })
        stopSignal.start { [unowned self] in stop("the room was closed") }
        try loop.run { stopping && connections.isEmpty }
    }

    private func admit(_ fd: CInt) {
        let address = Socket.peerAddress(fd)
        let peer = address?.description ?? "unknown"
        let host = address?.host ?? peer
        if let why = roster.refusal(host: host) {
            // Turned away at once: one line, no buffers, no fd kept.
            let bytes = Array(why.utf8)
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            Glibc.close(fd)
            console.show(.notice("turned away \(peer): \(why.dropFirst(2).dropLast())"))
            return
        }
        let conn = LineConnection(fd: fd, peer: peer, loop: loop)
        conn.delegate = self
        conn.start()
        let id = ObjectIdentifier(conn)
        connections[id] = conn
        carryOut(roster.join(id, address: peer, host: host))
        if roster.name(of: id) == nil { connections[id] = nil }
    }

    /// Does what the roster decided.
    private func carryOut(_ actions: [RoomRoster<ObjectIdentifier>.Action]) {
        for a in actions {
            switch a {
            case .send(let id, let text):
                connections[id]?.send(Array(text.utf8))
            case .broadcast(let text, let except):
                let bytes = Array(text.utf8)
                for id in roster.order where id != except { connections[id]?.send(bytes) }
            case .show(let event):
                console.show(event)
            case .finish(let id):
                connections[id]?.finishWriting()
            }
        }
    }

    // MARK: Input from the server's own keyboard

    private func input(_ events: [InputEvent]) {
        for e in events {
            switch e {
            case .line(let bytes):
                carryOut(roster.operatorLine(bytes))
            case .eof:
                // The room stays open without a keyboard; scripts run it so.
                break
            case .quit:
                stop("the server left")
            }
        }
    }

    private func stop(_ reason: String) {
        guard !stopping else { return }
        stopping = true
        acceptor.stop()
        for id in roster.order { connections[id]?.close(reason) }
        if connections.isEmpty { loop.stop() }
    }
}

extension ChatRoom: LineConnectionDelegate {
    func connection(_ c: LineConnection, received item: LineBuffer.Item) {
        switch item {
        case .line(let b): carryOut(roster.line(b, truncated: false, from: ObjectIdentifier(c)))
        case .truncated(let b): carryOut(roster.line(b, truncated: true, from: ObjectIdentifier(c)))
        }
    }

    func connectionClosed(_ c: LineConnection, reason: String) {
        let id = ObjectIdentifier(c)
        connections[id] = nil
        carryOut(roster.leave(id, reason: reason))
        if config.once, roster.everJoined, roster.count == 0 { stop("the last client left") }
        if stopping, connections.isEmpty { loop.stop() }
    }
}
