import Testing
import FTChat
import FTWire

@Suite struct RoomRosterTests {
    typealias R = RoomRoster<Int>

    func room(max: Int = 10) -> R { R(maxMembers: max, operatorName: "server") }

    @Test func joinsAreAnnouncedToTheOthers() {
        var r = room()
        let first = r.join(1, address: "10.0.0.1:5000")
        #expect(first.contains(.show(.joined(who: "10.0.0.1:5000", count: 1))))
        #expect(first.contains(.broadcast("* 10.0.0.1:5000 joined (1 in the room)\n", except: 1)))
        _ = r.join(2, address: "10.0.0.2:5000")
        #expect(r.order == [1, 2] && r.count == 2)
        #expect(r.who == "in the room (2): 10.0.0.1:5000, 10.0.0.2:5000")
    }

    @Test func aFullRoomTurnsTheNewcomerAway() {
        var r = room(max: 1)
        _ = r.join(1, address: "a")
        #expect(r.join(2, address: "b") == [.send(2, "* the room is full (1); try again later\n"), .finish(2)])
        #expect(r.count == 1 && r.name(of: 2) == nil)
    }

    /// One host cannot take every seat: past its share it is turned away,
    /// and a seat it gave up is its own again.
    @Test func eachHostHoldsAtMostItsShareOfSeats() {
        var r = room(max: 64)
        #expect(r.hostShare == 8)
        for k in 0..<8 { _ = r.join(k, address: "10.0.0.9:\(k)", host: "10.0.0.9") }
        let turned = r.join(100, address: "10.0.0.9:100", host: "10.0.0.9")
        #expect(turned == [.send(100, "* your host already holds 8 seats, its share of the room; try again later\n"), .finish(100)])
        #expect(r.refusal(host: "10.0.0.9") != nil && r.refusal(host: "10.0.0.1") == nil)
        _ = r.join(200, address: "10.0.0.1:1", host: "10.0.0.1")
        _ = r.leave(3, reason: "bye")
        #expect(r.refusal(host: "10.0.0.9") == nil)
        #expect(r.count == 8)
    }

    /// Nobody posts as the room or as another member.
    @Test func namesAreUniqueAndTheRoomsOwnIsReserved() {
        var r = room()
        _ = r.join(1, address: "a")
        _ = r.join(2, address: "b")
        _ = r.line(Array("/nick alice".utf8), truncated: false, from: 1)
        #expect(r.name(of: 1) == "alice")
        #expect(r.line(Array("/nick Alice".utf8), truncated: false, from: 2) == [.send(2, "* 'Alice' is taken in this room; pick another\n")])
        #expect(r.line(Array("/nick SERVER".utf8), truncated: false, from: 2) == [.send(2, "* 'SERVER' is the room's own name; pick another\n")])
        #expect(r.name(of: 2) == "b")
        _ = r.line(Array("/nick alice".utf8), truncated: false, from: 1)
        #expect(r.name(of: 1) == "alice", "one's own name again is fine")
    }

    @Test func aLineGoesToEveryoneButItsSenderEscaped() {
        var r = room()
        _ = r.join(1, address: "a")
        _ = r.join(2, address: "b")
        let out = r.line(Array("hi \u{1B}[2J there".utf8), truncated: false, from: 2)
        #expect(out.contains(.broadcast("b: hi \\e[2J there\n", except: 2)), "\(out)")
        let cut = r.line(Array("long".utf8), truncated: true, from: 1)
        #expect(cut.contains(.send(1, "* your line was over 64 KiB and was cut there\n")))
        #expect(r.line(Array("x".utf8), truncated: false, from: 99).isEmpty, "a stranger's line goes nowhere")
    }

    @Test func commands() {
        var r = room()
        _ = r.join(1, address: "a")
        _ = r.join(2, address: "b")
        #expect(r.line(Array("/nick alice".utf8), truncated: false, from: 1) == [
            .show(.renamed(from: "a", to: "alice")), .broadcast("* a is now alice\n", except: nil)])
        #expect(r.name(of: 1) == "alice")
        #expect(r.line(Array("/nick two words".utf8), truncated: false, from: 2)
                == [.send(2, "* a name is 1 to 32 letters, digits or . _ - (no spaces)\n")])
        #expect(r.line(Array("/who".utf8), truncated: false, from: 2) == [.send(2, "* in the room (2): alice, b\n")])
        #expect(r.line(Array("/quit".utf8), truncated: false, from: 2) == [.send(2, "* bye\n"), .finish(2)])
        #expect(r.line(Array("/unknown".utf8), truncated: false, from: 2).contains(.broadcast("b: /unknown\n", except: 2)),
                "an unknown command is a plain line")
        #expect(r.leave(1, reason: "closed") == [.show(.left(who: "alice", count: 1, reason: "closed")),
                                                  .broadcast("* alice left (1 in the room)\n", except: nil)])
        #expect(r.leave(1, reason: "again").isEmpty)
    }

    @Test func theOperatorTalksToAll() {
        let r = room()
        #expect(r.operatorLine(Array("hello".utf8)) == [.broadcast("server: hello\n", except: nil)])
        #expect(r.operatorLine([]).isEmpty)
        #expect(r.operatorLine(Array("/who".utf8)) == [.show(.notice("in the room (0): "))])
    }

    @Test func nickRules() {
        #expect(R.validNick("alice") && R.validNick("bob_2.x-y") && R.validNick("李"))
        #expect(!R.validNick("") && !R.validNick("a b") && !R.validNick(String(repeating: "n", count: 33)) && !R.validNick("a\u{1B}"))
    }
}
