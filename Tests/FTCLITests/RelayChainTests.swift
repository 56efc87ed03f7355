import Foundation
import Testing
import Synchronization
import FTTestSupport

/// `ft send --to`: real receivers on loopback, each keeping a copy and
/// relaying to the next; every copy compared byte for byte.
@Suite(.serialized) struct RelayChainTests {
    func hostsEvent(_ output: String) -> [[String: Any]]? {
        jsonEvents(output).first { $0["event"] as? String == "hosts" }?["hosts"] as? [[String: Any]]
    }

    func makeSourceTree(_ tmp: TempDir) -> (root: String, big: [UInt8]) {
        let root = tmp.sub("src/tree")
        tmp.sub("src/tree/nested/deeper")
        tmp.sub("src/tree/empty dir")
        writeFile(root + "/nested/deeper/中文 文件.txt", Array("你好\n".utf8))
        writeFile(root + "/nested/empty", [])
        for i in 0..<40 { writeFile(root + "/nested/small-\(i)", patternBytes(1000 + i * 97, seed: UInt64(i + 1))) }
        let big = patternBytes((9 << 20) + 3, seed: 91)
        writeFile(root + "/big.bin", big)
        return (root, big)
    }

    /// `src/tree` of `directories` × `files` files, file f of `size(f)` bytes.
    func makeFlatTree(_ tmp: TempDir, directories: Int, files: Int, size: (Int) -> Int) -> String {
        let root = tmp.sub("src/tree")
        for d in 0..<directories {
            tmp.sub("src/tree/d\(d)")
            for f in 0..<files { writeFile(root + "/d\(d)/f\(f)", patternBytes(size(f), seed: UInt64(d * 1000 + f + 1))) }
        }
        return root
    }

    func expectSameTree(_ a: String, _ b: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let left = listTree(a), right = listTree(b)
        #expect(left == right, "\(what): tree differs", sourceLocation: sourceLocation)
        for p in left {
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: a + "/" + p, isDirectory: &isDir)
            if !isDir.boolValue { expectSame(readFile(a + "/" + p), readFile(b + "/" + p), "\(what): \(p)", sourceLocation: sourceLocation) }
        }
    }

    @Test func aTreeReachesThreeHostsByteIdenticalThroughTee() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (root, _) = makeSourceTree(tmp)
        let receivers = try (1...3).map { try FTReceiver(dir: tmp.sub("h\($0)")) }
        let send = try run(ftPath, ["send", "--to", receivers.map(\.address).joined(separator: ","), root, "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        let hosts = try #require(hostsEvent(send.stdout))
        #expect(hosts.map { $0["host"] as? String } == receivers.map(\.address))
        #expect(hosts.allSatisfy { $0["ok"] as? Bool == true && $0["pass"] as? Int == 1 }, "\(hosts)")
        for (i, r) in receivers.enumerated() {
            expectSameTree(root, tmp.path + "/h\(i + 1)/tree", "host \(i + 1)")
            let done = try #require(r.events.first { $0["event"] as? String == "done" }, "host \(i + 1)")
            #expect(done["verified"] as? Bool == true)
            let engine = done["engine"] as? [String: Any]
            let ops = engine?["operations"] as? [String: Any]
            if i < 2 {
                // Relaying hosts fork the stream with tee(2) on the ring.
                #expect(engine?["data_path"] as? String == "splice+tee (relay)")
                let tee = ops?["tee"] as? [String: Any]
                #expect((tee?["bytes"] as? Int ?? 0) >= 9 << 20, "host \(i + 1) teed \(tee ?? [:])")
            } else {
                #expect(ops?["tee"] == nil, "the last host relays nothing")
            }
        }
        for r in receivers { _ = r.stop() }
    }

    /// A host down the chain may review a batch later than the host that
    /// relays to it; the stream's data for that batch must not reach it
    /// first (it would refuse it as out of order). Its review is slowed
    /// here, batch after batch, so the data would overtake it every time.
    @Test func aHostWhoseReviewLagsStillGetsEveryBatchInOrder() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        // 8 directories of 90 files: several batches, each with directories,
        // so each batch's review waits on the offload thread.
        let root = makeFlatTree(tmp, directories: 8, files: 90) { 600 + $0 * 13 }
        let first = try FTReceiver(dir: tmp.sub("h1"))
        let lagging = try FTReceiver(dir: tmp.sub("h2"), environment: ["FT_TEST_REVIEW_DELAY_MS": "150"])
        let send = try run(ftPath, ["send", "--to", "\(first.address),\(lagging.address)", root, "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        let hosts = try #require(hostsEvent(send.stdout), "\(send.stderr)")
        try #require(hosts.allSatisfy { $0["ok"] as? Bool == true && $0["pass"] as? Int == 1 }, "\(hosts)")
        expectSameTree(root, tmp.path + "/h1/tree", "host 1")
        expectSameTree(root, tmp.path + "/h2/tree", "host 2")
        _ = first.stop()
        _ = lagging.stop()
    }

    /// A host that stops answering while a host before it waits for its
    /// answer: that host is passed by and reported before the sender's own
    /// idle timeout (the same 4 s here) could fail the whole chain.
    @Test func aHostThatStopsAnsweringIsPassedByBeforeTheSenderGivesUp() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        // 3,000 files: a first batch of 128 entries, then batches of 1,024.
        let root = makeFlatTree(tmp, directories: 6, files: 500) { 1200 + $0 }
        let receivers = try (1...3).map { try FTReceiver(dir: tmp.sub("h\($0)"), extra: ["--timeout", "4"]) }
        defer { receivers[2].child.kill(SIGKILL) }
        let sender = try Child(ftPath, ["send", "--to", receivers.map(\.address).joined(separator: ","), root, "--json",
                                        "--timeout", "4", "--limit", "1M"])
        try #require(receivers[2].child.waitForOutput("\"event\":\"file-done\"", seconds: 20), "host 3 got nothing")
        receivers[2].child.kill(SIGSTOP)
        let send = sender.wait(seconds: 60)
        #expect(send.status == 1, "one host failed: \(send.stderr)")
        let hosts = try #require(hostsEvent(send.stdout), "the chain ended without its hosts' outcomes: \(send.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, true, false], "\(hosts)")
        #expect((hosts[2]["message"] as? String ?? "").contains("no answer"), "\(hosts[2])")
        for i in 0..<2 { expectSameTree(root, tmp.path + "/h\(i + 1)/tree", "host \(i + 1)") }
        for r in receivers.prefix(2) { _ = r.stop() }
    }

    /// A next host whose connect hangs (its SYNs dropped, as by a firewall
    /// or a host gone from the LAN) is given less than the chain's idle
    /// timeout, not a fixed 10 s: with --timeout 4 everywhere the sender
    /// gave up on the whole chain before host 1 passed that host by. The
    /// SYNs are dropped by a listener whose accept queue is full.
    @Test func aNextHostThatNeverTakesTheConnectionIsPassedByInTime() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, bytes) = tmp.sourceFile(2 << 20, seed: 94)
        let first = try FTReceiver(dir: tmp.sub("h1"), extra: ["--timeout", "4"])
        let last = try FTReceiver(dir: tmp.sub("h3"), extra: ["--timeout", "4"])
        let (full, port, filler) = try fullListener()
        defer { close(full); close(filler) }
        let send = try run(ftPath, ["send", "--to", "\(first.address),127.0.0.1:\(port),\(last.address)", src, "--json", "--timeout", "4"])
        #expect(send.status == 1, "one host failed: \(send.stderr)")
        let hosts = try #require(hostsEvent(send.stdout), "the chain ended without its hosts' outcomes: \(send.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, false, true], "\(hosts)")
        expectSame(readFile(tmp.path + "/h1/data.bin"), bytes, "host 1")
        expectSame(readFile(tmp.path + "/h3/data.bin"), bytes, "host 3")
        _ = first.stop()
        _ = last.stop()
    }

    /// A next host whose name the resolver never answers for is passed by
    /// within the chain's share of the idle timeout, and the lookup holds up
    /// no other push to that host meanwhile (it ran on the receiver's one
    /// ordered offload thread, which reviews every session's directories).
    /// Host 1 runs in a mount namespace whose resolv.conf names a DNS server
    /// that never answers.
    @Test func aNameTheResolverNeverAnswersIsPassedByAndStallsNoOtherPush() throws {
        try #require(geteuid() == 0, "this test runs a receiver in a mount namespace and needs root (CI runs as root)")
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dns = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(dns) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(53).bigEndian
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(dns, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0, "cannot take 127.0.0.1:53 for a silent DNS server (errno \(errno))")
        let conf = tmp.path + "/resolv.conf"
        writeFile(conf, Array("nameserver 127.0.0.1\noptions timeout:10 attempts:1\n".utf8))
        let inNamespace = ["/usr/bin/unshare", "-m", "/bin/sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"", conf]
        let first = try FTReceiver(dir: tmp.sub("h1"), extra: ["--timeout", "4"], wrapper: inNamespace)
        let last = try FTReceiver(dir: tmp.sub("h3"), extra: ["--timeout", "4"])
        let (src, bytes) = tmp.sourceFile(2 << 20, seed: 96)
        let chain = try Child(ftPath, ["send", "--to", "\(first.address),h2.ft-test.example,\(last.address)", src, "--json", "--timeout", "4"])
        try #require(first.child.waitForOutput("\"event\":\"start\"", seconds: 20), "the chain push did not reach host 1")
        let tree = makeFlatTree(tmp, directories: 3, files: 4) { 100 + $0 }
        let other = try run(ftPath, ["send", first.address, tree, "--json", "--timeout", "4"])
        #expect(other.status == 0, "another push to host 1 during the lookup: \(other.stderr)")
        expectSameTree(tree, tmp.path + "/h1/tree", "the other push")
        let send = chain.wait(seconds: 60)
        #expect(send.status == 1, "one host failed: \(send.stderr)")
        let hosts = try #require(hostsEvent(send.stdout), "the chain ended without its hosts' outcomes: \(send.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, false, true], "\(hosts)")
        expectSame(readFile(tmp.path + "/h1/data.bin"), bytes, "host 1")
        expectSame(readFile(tmp.path + "/h3/data.bin"), bytes, "host 3")
        _ = first.stop()
        _ = last.stop()
    }

    /// A listener on 127.0.0.1 with a backlog of 0 and one connection
    /// queued on it that nobody accepts: Linux drops the SYNs of any other.
    func fullListener() throws -> (listener: CInt, port: UInt16, filler: CInt) {
        let (listener, port) = loopbackListener()
        try #require(listen(listener, 0) == 0)
        let filler = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(filler, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(r == 0, "errno \(errno)")
        return (listener, port, filler)
    }

    @Test func aHopKilledMidPushIsReportedAndTheOthersStillFinish() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, bytes) = tmp.sourceFile(48 << 20, seed: 92)
        let receivers = try (1...4).map { try FTReceiver(dir: tmp.sub("h\($0)")) }
        // Paced at 32 MiB/s the push takes 1.5 s: host 2 dies inside it.
        let sender = try Child(ftPath, ["send", "--to", receivers.map(\.address).joined(separator: ","), src, "--json", "--limit", "32M"])
        #expect(receivers[1].child.waitForOutput("\"event\":\"progress\"", seconds: 20))
        receivers[1].child.kill(SIGKILL)
        let send = sender.wait(seconds: 120)
        #expect(send.status == 1, "a failed host makes the push fail")
        let hosts = try #require(hostsEvent(send.stdout), "\(send.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, false, true, true], "\(hosts)")
        #expect((hosts[1]["message"] as? String ?? "").count > 10, "the failure has a reason: \(hosts[1])")
        #expect(jsonEvents(send.stdout).contains { $0["event"] as? String == "pass" && $0["pass"] as? Int == 2 })
        for i in [0, 2, 3] { expectSame(readFile(tmp.path + "/h\(i + 1)/data.bin"), bytes, "host \(i + 1)") }
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/h2/data.bin"), "no torn file on the killed host")
        for i in [0, 2, 3] { _ = receivers[i].stop() }
    }

    @Test func aHostDownBeforeThePushIsPassedByInTheSameChain() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, bytes) = tmp.sourceFile(3 << 20, seed: 93)
        let first = try FTReceiver(dir: tmp.sub("h1"))
        let gone = try FTReceiver(dir: tmp.sub("h2"))
        let last = try FTReceiver(dir: tmp.sub("h3"))
        _ = gone.stop()
        let send = try run(ftPath, ["send", "--to", [first, gone, last].map(\.address).joined(separator: ","), src, "--json"])
        #expect(send.status == 1)
        let hosts = try #require(hostsEvent(send.stdout), "\(send.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, false, true])
        #expect(hosts.map { $0["pass"] as? Int } == [1, 1, 1], "host 1 closed the chain around host 2 itself")
        // Host 1 says only that: whether the port was closed is not the pusher's to learn.
        #expect(hosts[1]["message"] as? String == "it did not answer as an ft receiver", "\(hosts[1])")
        expectSame(readFile(tmp.path + "/h1/data.bin"), bytes, "host 1")
        expectSame(readFile(tmp.path + "/h3/data.bin"), bytes, "host 3")
        _ = first.stop()
        _ = last.stop()
    }

    /// A hop that is no ft receiver (a closed port, or another service) is
    /// reported alike, so a chain cannot map what listens behind a host;
    /// `--relay-to` limits which addresses a host dials at all.
    @Test func hopsThatAreNotFTLookAlikeAndRelayToLimitsTheHops() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sourceFile(200_000, seed: 95).path
        // Other services: one answers with a banner of its own, one waits
        // for its client to speak (as a web server does). Each counts what
        // the relaying host wrote to it: nothing, since an ft receiver
        // speaks first and neither did.
        let written = Mutex<[Int]>([0, 0])
        func service(_ which: Int, greeting: String?) -> (CInt, UInt16) {
            let (listener, port) = loopbackListener()
            Thread {
                while true {
                    let c = accept(listener, nil, nil)
                    if c < 0 { return }
                    if let greeting { _ = greeting.withCString { send(c, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }
                    var tv = timeval(tv_sec: 0, tv_usec: 300_000)
                    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    var buf = [UInt8](repeating: 0, count: 4096)
                    while true {
                        let n = recv(c, &buf, buf.count, 0)
                        if n <= 0 { break }
                        written.withLock { $0[which] += n }
                    }
                    close(c)
                }
            }.start()
            return (listener, port)
        }
        let (ssh, servicePort) = service(0, greeting: "SSH-2.0-OpenSSH_9.2\r\n")
        let (web, webPort) = service(1, greeting: nil)
        defer { close(ssh); close(web) }
        let (closed, closedPort) = loopbackListener()
        close(closed)  // nothing listens there now
        let first = try FTReceiver(dir: tmp.sub("h1"))
        let last = try FTReceiver(dir: tmp.sub("h4"))
        var push = try run(ftPath, ["send", "--to", [first.address, "127.0.0.1:\(servicePort)", "127.0.0.1:\(closedPort)",
                                                     "127.0.0.1:\(webPort)", last.address].joined(separator: ","),
                                    src, "--json"])
        var hosts = try #require(hostsEvent(push.stdout), "\(push.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, false, false, false, true])
        #expect(hosts[1]["message"] as? String == "it did not answer as an ft receiver", "\(hosts[1])")
        #expect(hosts[2]["message"] as? String == hosts[1]["message"] as? String, "a closed port and another service look alike: \(hosts[2])")
        #expect(hosts[3]["message"] as? String == hosts[1]["message"] as? String, "a silent service looks alike too: \(hosts[3])")
        usleep(400_000)
        #expect(written.withLock { $0 } == [0, 0], "the relaying host wrote nothing into either service")
        _ = first.stop()

        let fenced = try FTReceiver(dir: tmp.sub("h5"), extra: ["--relay-to", "10.0.0.0/8,fd00::/8"])
        push = try run(ftPath, ["send", "--to", [fenced.address, last.address].joined(separator: ","), src, "--json"])
        hosts = try #require(hostsEvent(push.stdout), "\(push.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, false])
        #expect((hosts[1]["message"] as? String)?.contains("--relay-to") == true, "\(hosts[1])")
        _ = fenced.stop()
        _ = last.stop()
        let open = try FTReceiver(dir: tmp.sub("h6"), extra: ["--relay-to", "127.0.0.0/8"])
        let next = try FTReceiver(dir: tmp.sub("h7"))
        push = try run(ftPath, ["send", "--to", [open.address, next.address].joined(separator: ","), src, "-q"])
        #expect(push.status == 0, "\(push.stderr)")
        expectSame(readFile(tmp.path + "/h7/data.bin"), readFile(src), "the host inside --relay-to")
        _ = open.stop()
        _ = next.stop()
        let bad = try run(ftPath, ["recv", "--relay-to", "10.0.0.0/33"])
        #expect(bad.status == 2 && bad.stderr.contains("prefix length"), "\(bad.stderr)")
    }

    @Test func aHopWithAnotherCodeIsRefusedAndPassedBy() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sourceFile(100_000, seed: 94).path
        let first = try FTReceiver(dir: tmp.sub("h1"))
        let other = try FTReceiver(dir: tmp.sub("h2"), environment: ["FT_CODE": "zzzz-zzzz-zzzz"])
        let last = try FTReceiver(dir: tmp.sub("h3"))
        let send = try run(ftPath, ["send", "--to", [first, other, last].map(\.address).joined(separator: ","), src, "--json"])
        let hosts = try #require(hostsEvent(send.stdout), "\(send.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [true, false, true])
        #expect((hosts[1]["message"] as? String)?.contains("code") == true, "\(hosts[1])")
        #expect(listTree(tmp.path + "/h2").isEmpty, "nothing reached the host with another code")
        for r in [first, other, last] { _ = r.stop() }
    }

    @Test func aReceiverThatAcceptsAnyoneDoesNotRelay() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sourceFile(100_000, seed: 95).path
        let open = try FTReceiver(dir: tmp.sub("h1"), extra: ["--no-auth"])
        let next = try FTReceiver(dir: tmp.sub("h2"))
        let send = try run(ftPath, ["send", "--to", "\(open.address),\(next.address)", src, "--json"])
        let hosts = try #require(hostsEvent(send.stdout), "\(send.stderr)")
        #expect(hosts.map { $0["ok"] as? Bool } == [false, true])
        #expect((hosts[0]["message"] as? String)?.contains("--no-auth") == true, "\(hosts[0])")
        #expect(hosts[1]["pass"] as? Int == 2, "the sender reached host 2 itself")
        #expect(listTree(tmp.path + "/h1").isEmpty)
        _ = open.stop()
        _ = next.stop()
    }

    @Test func badChainArgumentsAreRefusedBeforeAnythingConnects() throws {
        for (args, needle) in [
            (["--to", "a,,b", "x"], "empty host"),
            (["--to", "a:1,a:1", "x"], "twice"),
            (["--to", "a b", "x"], "not HOST[:PORT]"),
            (["--to", "a,b", "x", "--encrypt"], "not relayed"),
        ] {
            let r = try run(ftPath, ["send"] + args)
            #expect(r.status == 64 || r.status == 2, "\(args): \(r.status)")
            #expect(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
    }
}
