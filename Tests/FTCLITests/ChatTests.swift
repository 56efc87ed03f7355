import Foundation
import Testing
import FTTestSupport
import FTWire
import FTBench

let greeting = "你好, ft 👋"
/// The fields of every `ready` event: ft recv, ft chat tcp --listen, ft chat udp.
let readyKeys: Set<String> = ["event", "v", "listen", "send_to", "peer", "dir", "engine", "code", "auth", "detail"]

@Suite(.serialized) struct ChatTests {
    @Test func ncClientTalksWithOurRoomBothWays() throws {
        let port = freePort()
        let room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--once", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        let nc = try Child("/usr/bin/nc", ["-N", "127.0.0.1", "\(port)"])
        #expect(nc.waitForOutput("you joined"), "\(nc.stdoutSoFar)")
        nc.write(Array((greeting + " from nc\n").utf8))
        #expect(room.waitForOutput("from nc"))
        room.write(Array((greeting + " from the room\n").utf8))
        #expect(nc.waitForOutput("server: \(greeting) from the room"), "\(nc.stdoutSoFar)")
        nc.closeInput()
        let end = room.wait(seconds: 20)
        #expect(end.status == 0, "\(end.stderr)")
        let events = jsonEvents(end.stdout)
        #expect(events.contains { $0["event"] as? String == "message" && $0["text"] as? String == greeting + " from nc" })
        #expect(events.contains { $0["event"] as? String == "join" })
        #expect(events.contains { $0["event"] as? String == "leave" })
        _ = nc.wait(seconds: 10)
    }

    @Test func ourClientTalksWithAnNcServerBothWays() throws {
        let port = freePort()
        let server = try Child("/usr/bin/nc", ["-l", "127.0.0.1", "\(port)"])
        usleep(300_000)
        let client = try Child(ftPath, ["chat", "tcp", "127.0.0.1:\(port)", "--json"])
        #expect(client.waitForOutput("\"connected\""), "\(client.stdoutSoFar) \(client.stderrSoFar)")
        client.write(Array((greeting + " to nc\n").utf8))
        #expect(server.waitForOutput(greeting + " to nc"))
        server.write(Array((greeting + " from nc -l\n").utf8))
        #expect(client.waitForOutput("from nc -l"))
        client.closeInput()
        let end = client.wait(seconds: 20)
        #expect(end.status == 0, "stdin EOF ends the client cleanly: \(end.stderr)")
        #expect(jsonEvents(end.stdout).contains { $0["text"] as? String == greeting + " from nc -l" })
        server.kill(SIGTERM)
        _ = server.wait(seconds: 10)
    }

    @Test func udpWithNcBothWaysAndStrangersShown() throws {
        let ours = freePort()
        let theirs = freePort()
        let chat = try Child(ftPath, ["chat", "udp", "--bind", "127.0.0.1:\(ours)", "--peer", "127.0.0.1:\(theirs)", "--json"])
        #expect(chat.waitForOutput("\"ready\""))
        #expect(chat.stdoutSoFar.contains("bound to 127.0.0.1:\(ours)"), "the bind address is the one given")
        let nc = try Child("/usr/bin/nc", ["-u", "-p", "\(theirs)", "127.0.0.1", "\(ours)"])
        usleep(200_000)
        nc.write(Array((greeting + " over udp\n").utf8))
        #expect(chat.waitForOutput("over udp"))
        chat.write(Array((greeting + " back over udp\n").utf8))
        #expect(nc.waitForOutput(greeting + " back over udp"), "\(nc.stdoutSoFar)")

        // A datagram from a third party is shown with its source.
        let stranger = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = ours.bigEndian
        to.sin_addr.s_addr = inet_addr("127.0.0.1")
        let msg = Array("who is this\n".utf8)
        _ = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(stranger, msg, msg.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(stranger)
        #expect(chat.waitForOutput("who is this"))
        chat.closeInput()
        let end = chat.wait(seconds: 10)
        #expect(end.status == 0)
        let events = jsonEvents(end.stdout)
        #expect(events.contains { $0["text"] as? String == greeting + " over udp" && $0["stranger"] as? Bool == false })
        // One shape for every ready event (ft recv's is checked against the same keys).
        let ready = try #require(events.first { $0["event"] as? String == "ready" })
        #expect(Set(ready.keys) == readyKeys, "\(ready)")
        #expect(ready["listen"] as? String == "127.0.0.1:\(ours)" && ready["peer"] as? String == "127.0.0.1:\(theirs)")
        #expect(ready["send_to"] as? [String] == ["127.0.0.1:\(ours)"] && ready["dir"] is NSNull && ready["engine"] is String)
        #expect(events.contains { $0["text"] as? String == "who is this" && $0["stranger"] as? Bool == true })
        nc.kill(SIGTERM)
        _ = nc.wait(seconds: 5)
    }

    /// On a terminal the client edits the line before it is sent: the
    /// reported keys (Left, Ctrl-A) move the cursor, Up brings the last
    /// line back, and Ctrl-D on an empty line leaves.
    @Test func theLineEditorOnATerminalSendsTheEditedLine() throws {
        let port = freePort()
        let room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        let client = try Child(ftPath, ["chat", "tcp", "127.0.0.1:\(port)", "--name", "tty"], terminalColumns: 30)
        #expect(client.waitForOutput("connected to"))
        #expect(room.waitForOutput("\"join\""))
        client.write(Array("half-typed line\u{1B}[DX\u{01}^\r".utf8))
        #expect(room.waitForOutput("^half-typed linXe"), "\(room.stdoutSoFar)")
        client.write(Array("\u{1B}[A!\r".utf8))
        #expect(room.waitForOutput("^half-typed linXe!"), "Up recalls the line sent: \(room.stdoutSoFar)")
        let other = try LinePeer(port: port)
        other.say("a line from the room that is wider than thirty columns")
        #expect(client.waitForOutput("wider than thirty"), "\(client.stdoutSoFar)")
        client.write([0x04])
        let end = client.wait(seconds: 20)
        #expect(end.status == 0, "Ctrl-D on an empty line leaves: \(end.stderr)")
        let texts = jsonEvents(room.stdoutSoFar).filter { $0["event"] as? String == "message" }.compactMap { $0["text"] as? String }
        #expect(texts.prefix(2) == ["^half-typed linXe", "^half-typed linXe!"], "\(texts)")
        room.kill(SIGTERM)
        _ = room.wait(seconds: 10)
    }

    @Test func fiftyClientsEachMessageReachesEveryOtherExactlyOnce() throws {
        let port = freePort()
        let room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        #expect(jsonEvents(room.stdoutSoFar).first.map { Set($0.keys) } == readyKeys, "\(room.stdoutSoFar)")
        var peers: [LinePeer] = []
        for i in 0..<50 {
            let p = try LinePeer(port: port)
            let welcome = p.line() ?? ""
            #expect(welcome.contains("\(i + 1) in the room"), "\(welcome)")
            peers.append(p)
        }
        peers[0].say("/nick first")
        peers[0].say("hello room 7")
        peers[0].say("end marker")
        for (i, p) in peers.enumerated().dropFirst() {
            let seen = p.lines(until: "first: end marker")
            #expect(seen.filter { $0 == "first: hello room 7" }.count == 1, "client \(i) saw \(seen)")
            if i < 49 { #expect(seen.contains { $0.contains("joined (50 in the room)") }, "client \(i)") }
        }
        for p in peers { p.peer.hangUp() }
        #expect(room.waitForOutput("\"count\":0"))
        room.kill(SIGINT)
        let end = room.wait(seconds: 10)
        let events = jsonEvents(end.stdout)
        #expect(events.filter { $0["event"] as? String == "join" }.count == 50)
        #expect(events.filter { $0["event"] as? String == "leave" }.count == 50)
        #expect(events.filter { $0["event"] as? String == "message" }.count == 2)
    }

    @Test func hostileLinesAreCutOrEscapedAndTheRoomStaysUp() throws {
        let port = freePort()
        let room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        let victim = try LinePeer(port: port)
        _ = victim.line()
        let attacker = try LinePeer(port: port)
        _ = attacker.line()
        _ = victim.line()  // "... joined"
        let before = rssKiB(room.pid)

        // 16 MiB without a newline, then a newline.
        let mib = [UInt8](repeating: 0x41, count: 1 << 20)
        for _ in 0..<16 { attacker.sayBytes(mib) }
        attacker.sayBytes([0x0A])
        let grown = rssKiB(room.pid) - before
        #expect(grown < 8 << 10, "room RSS grew by \(grown) KiB for a 16 MiB line")
        let relayed = victim.line() ?? ""
        #expect(relayed.utf8.count < (64 << 10) + 64, "relayed line of \(relayed.utf8.count) bytes")
        #expect(attacker.lines(until: "was cut").last?.contains("over 64 KiB") == true)

        attacker.sayBytes([0x1B] + Array("[2J\u{1B}]0;owned\u{07}".utf8) + [0xFF, 0xFE] + Array(" tail\n".utf8))
        let escaped = victim.line() ?? ""
        #expect(!escaped.utf8.contains(0x1B) && !escaped.utf8.contains(0x07))
        #expect(escaped.hasSuffix("\\e[2J\\e]0;owned\\x07\\xFF\\xFE tail"), "\(escaped)")

        // The room still serves a newcomer.
        let late = try LinePeer(port: port)
        #expect(late.line()?.contains("3 in the room") == true)
        late.say("still here")
        #expect(victim.lines(until: "still here").last?.hasSuffix(": still here") == true)
        room.kill(SIGINT)
        let end = room.wait(seconds: 10)
        let events = jsonEvents(end.stdout)
        #expect(events.contains { $0["truncated"] as? Bool == true })
        #expect(events.contains { $0["valid_utf8"] as? Bool == false })
    }

    @Test func clientWithRetrySurvivesARoomRestart() throws {
        let port = freePort()
        var room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        let client = try Child(ftPath, ["chat", "tcp", "127.0.0.1:\(port)", "--retry", "--json"])
        #expect(client.waitForOutput("\"connected\""))
        room.kill(SIGKILL)
        _ = room.wait(seconds: 5)
        #expect(client.waitForOutput("\"disconnected\""))
        #expect(client.waitForOutput("retrying"))
        room = try Child(ftPath, ["chat", "tcp", "--listen", "127.0.0.1:\(port)", "--json"])
        #expect(room.waitForOutput("\"ready\""))
        #expect(room.waitForOutput("\"join\"", seconds: 30), "the client came back")
        client.write(Array("after the restart\n".utf8))
        #expect(room.waitForOutput("after the restart"))
        client.closeInput()
        #expect(client.wait(seconds: 20).status == 0)
        room.kill(SIGINT)
        _ = room.wait(seconds: 10)
    }

    @Test func clientWithoutRetryReportsTheLostServer() throws {
        let port = freePort()
        let r = try run(ftPath, ["chat", "tcp", "127.0.0.1:\(port)"], seconds: 20)
        #expect(r.status == 1)
        #expect(r.stderr.contains("127.0.0.1:\(port)") && r.stderr.contains("ECONNREFUSED"), "\(r.stderr)")
    }
}
