import ArgumentParser
import FTChat
import FTEngine
import FTFrontEnd
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "A quick two-way text check between hosts; nc and nc -u are valid peers.",
        discussion: """
            Lines are plain UTF-8 ending in a newline, so `nc HOST PORT`,
            `nc -l PORT` and `nc -u` work on the other end. Text from peers is
            shown with control characters, ANSI sequences and invalid UTF-8
            escaped (\\e[2J, \\xFF), so no peer can rewrite your screen. A line
            longer than 64 KiB is cut there, with a notice.

            On a terminal the line being typed is edited as in readline: arrows,
            Home/End, Ctrl-A/E/B/F, Alt-B/F (words), Delete, Ctrl-U/K/W (cut),
            Up/Down or Ctrl-P/N (the lines sent), Ctrl-L (clear). Ctrl-D on an
            empty line or Ctrl-C leaves.
            """,
        subcommands: [TCP.self, UDP.self])
}

extension Chat {
    struct TCP: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tcp",
            abstract: "Run a chat room (--listen) or join one (HOST:PORT).",
            discussion: """
                ROOM   ft chat tcp --listen [ADDR:]PORT [--once] [--name NAME]
                       Every client's line is shown here as [sender] text and
                       relayed to the other clients as `sender: text`. Lines typed
                       here go to every client. Clients may send /nick NAME,
                       /who and /quit. Runs until interrupted; --once exits when
                       the last client leaves.
                CLIENT ft chat tcp HOST:PORT [--retry] [--name NAME]
                       Sends each line typed; shows each line received. Exits 0
                       when stdin ends or on /quit, 1 if the server goes away
                       (with --retry it reconnects with backoff instead).

                EXAMPLES
                  ft chat tcp --listen 9000
                  ft chat tcp 192.168.1.5:9000 --name alice
                  echo 'hello' | ft chat tcp 192.168.1.5:9000
                """)

        @Argument(help: ArgumentHelp("Room to join, HOST:PORT.", valueName: "host:port"))
        var target: String?

        @Option(help: ArgumentHelp("Run a room on [ADDR:]PORT (all interfaces without ADDR).", valueName: "addr:port"))
        var listen: String?

        @Flag(help: "Room: exit when the last client leaves.")
        var once = false

        @Flag(help: "Client: reconnect with backoff when the server goes away.")
        var retry = false

        @Option(help: "Name shown for your lines (a client sends /nick NAME).")
        var name: String?

        @Flag(help: "Print NDJSON events (message, join, leave, rename, notice, connected, disconnected, error).")
        var json = false

        @Option(help: "I/O engine: auto, io_uring or poll.")
        var engine: EnginePreference = .auto

        func validate() throws {
            switch (target, listen) {
            case (nil, nil): throw ValidationError("give HOST:PORT to join a room, or --listen PORT to run one")
            case (.some, .some): throw ValidationError("give either HOST:PORT or --listen, not both")
            default: break
            }
            if let listen { _ = try parseEndpoint(listen, "--listen", needHost: false) }
            if let target { _ = try parseEndpoint(target, "HOST:PORT", needHost: true) }
            if once, listen == nil { throw ValidationError("--once is for a room (--listen)") }
            if retry, target == nil { throw ValidationError("--retry is for a client (HOST:PORT)") }
            if let name, !(1...32).contains(name.count) || name.contains(" ") {
                throw ValidationError("--name is 1 to 32 characters without spaces")
            }
        }

        func run() throws {
            let logger = chatLogger()
            if let listen {
                let console = ChatTerminal(role: .room, json: json)
                defer { console.restore() }
                let room: ChatRoom
                do {
                    room = try ChatRoom(config: .init(listen: try parseEndpoint(listen, "--listen", needHost: false),
                                                      once: once, name: name ?? "server", engine: engine),
                                        console: console, logger: logger)
                } catch let e as IOError {
                    throw fail(e.description, program: "ft chat", json: json)
                }
                console.ready(ReadyEvent(
                    listen: room.address.description, sendTo: reachable(at: room.address), engine: room.backend.rawValue,
                    detail: "room open on \(room.address); join with: ft chat tcp HOST:\(room.address.port) (or nc HOST \(room.address.port))"))
                StopSignals.install(fd: room.stopDescriptor)
                do { try room.run() } catch { throw fail(error.description, program: "ft chat", json: json) }
            } else {
                let console = ChatTerminal(role: .client, json: json)
                defer { console.restore() }
                let outcome: ChatClient.Outcome
                do {
                    let client = try ChatClient(
                        config: .init(endpoint: try parseEndpoint(target!, "HOST:PORT", needHost: true), retry: retry,
                                      name: name, engine: engine),
                        console: console, logger: logger)
                    outcome = try client.run()
                } catch let e as IOError {
                    throw fail(e.description, program: "ft chat", json: json)
                }
                if case .lost(let why) = outcome {
                    console.restore()
                    throw fail(why, program: "ft chat", json: json)
                }
            }
        }
    }

    struct UDP: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "udp",
            abstract: "Exchange lines as UDP datagrams with one peer.",
            discussion: """
                Each line typed is one datagram to --peer. Datagrams from the peer
                are shown as they come; from anyone else, with their source
                address. The socket is bound to exactly --bind. A line longer
                than a datagram holds (65000 bytes) is cut, with a notice.

                EXAMPLE
                  host A:  ft chat udp --bind 9001 --peer hostB:9002
                  host B:  nc -u -p 9002 hostA 9001
                """)

        @Option(help: ArgumentHelp("Local [ADDR:]PORT to bind.", valueName: "addr:port"))
        var bind: String

        @Option(help: ArgumentHelp("Where lines go, HOST:PORT.", valueName: "host:port"))
        var peer: String

        @Flag(help: "Print NDJSON events.")
        var json = false

        @Option(help: "I/O engine: auto, io_uring or poll.")
        var engine: EnginePreference = .auto

        func validate() throws {
            _ = try parseEndpoint(bind, "--bind", needHost: false)
            _ = try parseEndpoint(peer, "--peer", needHost: true)
        }

        func run() throws {
            let console = ChatTerminal(role: .udp, json: json)
            defer { console.restore() }
            do {
                let chat = try UDPChat(
                    config: .init(bind: try parseEndpoint(bind, "--bind", needHost: false),
                                  peer: try parseEndpoint(peer, "--peer", needHost: true), engine: engine),
                    console: console, logger: chatLogger())
                console.ready(ReadyEvent(
                    listen: chat.boundAddress.description, sendTo: reachable(at: chat.boundAddress),
                    peer: chat.peerAddress.description, engine: chat.backend.rawValue,
                    detail: "bound to \(chat.boundAddress), sending to \(chat.peerAddress)"))
                try chat.run()
            } catch let e as IOError {
                throw fail(e.description, program: "ft chat", json: json)
            }
        }
    }
}

/// An endpoint from the command line; a port is required.
func parseEndpoint(_ text: String, _ what: String, needHost: Bool) throws -> Endpoint {
    let e: Endpoint
    do {
        e = try Endpoint.parse(text, defaultPort: 0, allowPortZero: !needHost)
    } catch {
        throw ValidationError("\(what) '\(text)': \(error)")
    }
    if needHost, e.host == nil { throw ValidationError("\(what) '\(text)' needs a host") }
    if needHost, e.port == 0 { throw ValidationError("\(what) '\(text)' needs a port") }
    return e
}

func chatLogger() -> Logger {
    var l = Logger(label: "ft chat") { _ in CLILogHandler(program: "ft chat") }
    l.logLevel = .warning
    return l
}
