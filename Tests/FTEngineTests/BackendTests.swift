import Dispatch
import Foundation
import Logging
import Testing
import FTTestSupport
import Glibc
import CURing
@testable import FTEngine

func makeBackend(_ kind: BackendKind) throws -> any IOBackend {
    switch kind {
    case .ioUring: return try URingBackend()
    case .poll: return PollBackend()
    }
}

/// Runs the backend until `count` completions arrived, or fails after 200
/// rounds (each waits at most 50 ms) so a broken backend cannot hang a test.
func collect(_ b: any IOBackend, _ count: Int) throws -> [Completion] {
    var out: [Completion] = []
    var rounds = 0
    while out.count < count {
        rounds += 1
        guard rounds < 200 else {
            Issue.record("only \(out.count) of \(count) completions arrived")
            return out
        }
        try b.run(timeoutNanoseconds: 50_000_000) { out.append($0) }
    }
    return out
}

/// Submits what is queued and lets the backend look once, so operations are
/// armed in the kernel before the test acts; nothing may complete yet.
func submitQueued(_ b: any IOBackend, sourceLocation: SourceLocation = #_sourceLocation) throws {
    var early: [Completion] = []
    try b.run(timeoutNanoseconds: 1_000_000) { early.append($0) }
    #expect(early.isEmpty, "completed before the test acted: \(early.map(\.result))", sourceLocation: sourceLocation)
}

func socketPair(_ b: any IOBackend) -> (CInt, CInt) {
    var fds: [CInt] = [-1, -1]
    precondition(socketpair(AF_UNIX, FT_SOCK_STREAM, 0, &fds) == 0)
    b.adopt(socket: fds[0])
    b.adopt(socket: fds[1])
    return (fds[0], fds[1])
}

func tempFile(_ bytes: [UInt8]) -> CInt {
    var template = Array("/tmp/ft-engine-test-XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    precondition(fd >= 0)
    unlink(template)
    bytes.withUnsafeBytes { _ = pwrite(fd, $0.baseAddress, $0.count, 0) }
    return fd
}

let backends: [BackendKind] = [.ioUring, .poll]

@Suite struct BackendTests {
    @Test(arguments: backends)
    func nopCompletesWithItsUserData(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let ud = UserData(slot: 42, generation: 7, tag: 3)
        b.queue(.nop, ud)
        let got = try collect(b, 1)
        #expect(got.first?.userData.owner == ud)
        #expect(got.first?.userData.kind == .nop)
        #expect(got.first?.result == 0)
    }

    @Test(arguments: backends)
    func waitAllReceiveGathersSplitSends(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let (a, c) = socketPair(b)
        defer { close(a); close(c) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 10, alignment: 1)
        defer { buf.deallocate() }
        b.queue(.recv(fd: c, buffer: buf, length: 10, flags: CInt(MSG_WAITALL)), UserData(raw: 1))
        try submitQueued(b)
        _ = "hello".withCString { send(a, $0, 5, 0) }
        _ = "world".withCString { send(a, $0, 5, 0) }
        let got = try collect(b, 1)
        #expect(got.first?.result == 10)
        #expect(String(decoding: UnsafeRawBufferPointer(start: buf, count: 10), as: UTF8.self) == "helloworld")
        #expect(b.stats[bytes: .recv] == 10)
    }

    @Test(arguments: backends)
    func shortTransferBreaksTheChain(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let file = tempFile(Array("abc".utf8))
        defer { close(file) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 1)
        defer { buf.deallocate() }
        // Ask for 8 bytes of a 3-byte file, linked to a nop.
        b.queue(.read(fd: file, buffer: buf, length: 8, offset: 0), UserData(raw: 1), link: true)
        b.queue(.nop, UserData(raw: 2))
        let got = try collect(b, 2).sorted { $0.userData.owner.raw < $1.userData.owner.raw }
        #expect(got.map(\.result) == [3, -ECANCELED])
    }

    @Test(arguments: backends)
    func fullTransferRunsTheChainInOrder(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let file = tempFile(payload)
        defer { close(file) }
        let (a, c) = socketPair(b)
        defer { close(a); close(c) }
        let pipe = try Pipe(size: 1 << 20)
        #expect(pipe.capacity >= 300_000)
        // file -> pipe -> socket, linked, as the sender's splice path does.
        b.queue(.splice(input: file, inputOffset: 0, output: pipe.writeEnd, outputOffset: Op.noOffset,
                        length: payload.count, flags: 0), UserData(raw: 1), link: true)
        b.queue(.splice(input: pipe.readEnd, inputOffset: Op.noOffset, output: a, outputOffset: Op.noOffset,
                        length: payload.count, flags: 0), UserData(raw: 2))
        let sink = UnsafeMutableRawPointer.allocate(byteCount: payload.count, alignment: 1)
        defer { sink.deallocate() }
        b.queue(.recv(fd: c, buffer: sink, length: payload.count, flags: CInt(MSG_WAITALL)), UserData(raw: 3))
        let got = try collect(b, 3)
        #expect(got.allSatisfy { $0.result == Int32(payload.count) })
        #expect(Array(UnsafeRawBufferPointer(start: sink, count: payload.count)) == payload)
        #expect(b.stats[bytes: .splice] == UInt64(2 * payload.count))
    }

    /// A sender streaming chunks with sendfile always has an inline
    /// completion ready, so the loop never blocks; ring completions (a
    /// socket's data, another connection's handshake) must still arrive.
    @Test(arguments: backends)
    func ringCompletionsArriveWhileInlineSendfilesKeepComing(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let (a, c) = socketPair(b)
        let (out, sink) = socketPair(b)
        let file = tempFile([UInt8](repeating: 7, count: 4096))
        defer { close(a); close(c); close(out); close(sink); close(file) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buf.deallocate() }
        b.queue(.recv(fd: c, buffer: buf, length: 1, flags: 0), UserData(slot: 1, generation: 0, tag: 7))
        try b.run(timeoutNanoseconds: 1_000_000) { _ in }
        _ = "x".withCString { send(a, $0, 1, 0) }
        var received = false
        var rounds = 0
        while !received, rounds < 100 {
            rounds += 1
            b.queue(.sendfile(socket: out, file: file, offset: 0, length: 4096, header: UnsafeRawPointer(buf), headerLength: 0),
                    UserData(slot: 2, generation: 0, tag: 8))
            try b.run(timeoutNanoseconds: 50_000_000) { if $0.userData.tag == 7 { received = true } }
            _ = recv(sink, buf, 4096, CInt(MSG_DONTWAIT))
        }
        #expect(received, "the receive never completed while inline sendfiles kept coming (\(rounds) rounds)")
    }

    /// A sendfile into a socket whose reader stopped must not hold the
    /// thread: other connections on the same loop keep moving, and the
    /// sendfile finishes once the reader drains.
    @Test(arguments: backends)
    func aSendfileToAStalledReaderLetsOtherOperationsRun(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let (out, stalled) = socketPair(b)
        let (a, c) = socketPair(b)
        let size = 32 << 20
        let file = tempFile([UInt8](repeating: 5, count: size))
        defer { close(out); close(stalled); close(a); close(c); close(file) }
        b.queue(.sendfile(socket: out, file: file, offset: 0, length: size, header: nil, headerLength: 0),
                UserData(slot: 1, generation: 0, tag: 1))
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 8)
        defer { buf.deallocate() }
        b.queue(.recv(fd: c, buffer: buf, length: 1, flags: 0), UserData(slot: 2, generation: 0, tag: 2))
        try submitQueued(b)
        _ = "x".withCString { send(a, $0, 1, 0) }
        var got: [UInt8: Int32] = [:]
        var rounds = 0
        while got[2] == nil, rounds < 40 {
            rounds += 1
            try b.run(timeoutNanoseconds: 50_000_000) { got[$0.userData.tag] = $0.result }
        }
        #expect(got[2] == 1, "the other socket's receive waited behind the sendfile")
        #expect(got[1] == nil, "the sendfile cannot be done: nobody read its socket")
        // The reader wakes up: the sendfile goes on and completes whole.
        var drained = 0
        rounds = 0
        while got[1] == nil, rounds < 2000 {
            rounds += 1
            while true {
                let n = recv(stalled, buf, 1 << 20, CInt(MSG_DONTWAIT))
                if n <= 0 { break }
                drained += n
            }
            try b.run(timeoutNanoseconds: 5_000_000) { got[$0.userData.tag] = $0.result }
        }
        while drained < size {
            let n = recv(stalled, buf, 1 << 20, 0)
            if n <= 0 { break }
            drained += n
        }
        #expect(got[1] == Int32(size))
        #expect(drained == size)
    }

    /// A loop that spins before sleeping still gets a completion that
    /// comes during the spin, and one that comes only after it (it then
    /// sleeps as before); nothing is lost or reported twice.
    @Test(arguments: backends)
    func anIdleSpinThenSleepLosesNothing(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        b.idleSpinNanoseconds = 50_000
        let (a, c) = socketPair(b)
        defer { close(a); close(c) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 1)
        defer { buf.deallocate() }
        for delay in [0, 2_000] as [UInt32] {  // µs: within the spin, after it
            b.queue(.recv(fd: c, buffer: buf, length: 8, flags: 0), UserData(raw: 1))
            try submitQueued(b)
            let writer = Thread { usleep(delay); _ = send(a, "ft-spin!", 8, 0) }
            writer.start()
            var got: [Completion] = []
            while got.isEmpty { try b.run(timeoutNanoseconds: nil) { got.append($0) } }
            #expect(got.count == 1 && got[0].result == 8, "after \(delay) µs: \(got.map(\.result))")
            while !writer.isFinished { usleep(100) }
        }
        b.queue(.timeout(nanoseconds: 5_000_000), UserData(raw: 9))
        var got: [Completion] = []
        while got.isEmpty { try b.run(timeoutNanoseconds: nil) { got.append($0) } }
        #expect(got.map(\.result) == [-ETIME])
    }

    @Test(arguments: backends)
    func timeoutFires(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        b.queue(.timeout(nanoseconds: 1_000_000), UserData(raw: 9))
        let got = try collect(b, 1)
        #expect(got.first?.result == -ETIME)
    }

    @Test(arguments: backends)
    func cancelByFDCancelsAPendingReceive(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let (a, c) = socketPair(b)
        defer { close(a); close(c) }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 1)
        defer { buf.deallocate() }
        b.queue(.recv(fd: c, buffer: buf, length: 8, flags: 0), UserData(raw: 1))
        try submitQueued(b)
        b.queue(.cancelFD(fd: c), UserData(raw: 2))
        let got = try collect(b, 2)
        let recv = got.first { $0.userData.owner.raw == 1 }
        #expect(recv?.result == -ECANCELED)
    }

    @Test(arguments: backends)
    func acceptAndConnectOverLoopback(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let listener = try Socket.listen(Endpoint(host: "127.0.0.1", port: 0))
        b.adopt(socket: listener.fd.raw)
        let client = try Socket.makeTCP(family: AF_INET)
        b.adopt(socket: client.raw)
        b.queue(.accept(fd: listener.fd.raw), UserData(raw: 1))
        var storage = listener.address.storage
        let len = listener.address.length
        try withUnsafePointer(to: &storage) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                b.queue(.connect(fd: client.raw, address: sa, length: len), UserData(raw: 2))
                let got = try collect(b, 2)
                let accepted = got.first { $0.userData.owner.raw == 1 }!.result
                #expect(accepted >= 0)
                #expect(got.first { $0.userData.owner.raw == 2 }?.result == 0)
                if accepted >= 0 { close(accepted) }
            }
        }
    }

    @Test(arguments: backends)
    func errorsComeBackAsNegativeErrno(kind: BackendKind) throws {
        let b = try makeBackend(kind)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 1)
        defer { buf.deallocate() }
        b.queue(.read(fd: 9999, buffer: buf, length: 8, offset: 0), UserData(raw: 1))
        let got = try collect(b, 1)
        #expect(got.first?.result == -EBADF)
        #expect(IOError(result: got.first!.result, "read", "/x").description == "read /x: Bad file descriptor (EBADF)")
    }
}

/// Work handed to the offload thread never holds the loop: while a job is
/// stuck, the loop's other operations complete; when it finishes, its
/// continuation runs on the loop's thread.
@Suite struct OffloadTests {
    final class Gate: @unchecked Sendable {
        let open = DispatchSemaphore(value: 0)
    }

    final class Ticker: LoopHandler {
        var ticks = 0
        func complete(_ c: Completion, on loop: EventLoop) { ticks += 1 }
    }

    @Test(arguments: backends)
    func aStuckJobDoesNotStopTheLoop(kind: BackendKind) throws {
        let loop = try EventLoop(backend: try makeBackend(kind), logger: Logger(label: "test"))
        let offload = try Offload(loop: loop)
        let gate = Gate()
        let loopThread = pthread_self()
        var result: Int?
        var ranOnLoop = false
        offload.run({ () -> Int in
            gate.open.wait()
            return 42
        }) { value in
            result = value
            ranOnLoop = pthread_equal(pthread_self(), loopThread) != 0
        }
        let ticker = Ticker()
        let reg = loop.register(ticker)
        for _ in 0..<5 { loop.backend.queue(.timeout(nanoseconds: 1_000_000), reg.userData(1)) }
        try loop.run { ticker.ticks == 5 }
        #expect(result == nil, "the job is still stuck")
        #expect(offload.pending == 1)
        gate.open.signal()
        try loop.run { result != nil }
        #expect(result == 42 && ranOnLoop)
        #expect(offload.pending == 0)
    }

    /// A job on a lane holds neither the ordered jobs nor the next lane's:
    /// with a stuck small-files store, the loop's other offload work and
    /// the next frame's store still finish.
    @Test(arguments: backends)
    func aStuckLaneHoldsNoOtherWork(kind: BackendKind) throws {
        let loop = try EventLoop(backend: try makeBackend(kind), logger: Logger(label: "test"))
        let offload = try Offload(loop: loop)
        #expect(offload.lanes == min(4, Int(ft_usable_cpus())) && offload.lanes >= 1)
        let gate = Gate()
        var finished: [String] = []
        offload.runSideBySide({ () -> String in
            gate.open.wait()
            return "stuck lane"
        }) { finished.append($0) }
        offload.run({ "ordered" }) { finished.append($0) }
        if offload.lanes > 1 {
            offload.runSideBySide({ "next lane" }) { finished.append($0) }
            try loop.run { finished.count == 2 }
            #expect(Set(finished) == ["ordered", "next lane"])
        } else {
            try loop.run { finished.count == 1 }
            #expect(finished == ["ordered"])
        }
        #expect(offload.pending == 1)
        gate.open.signal()
        try loop.run { finished.last == "stuck lane" }
        #expect(offload.pending == 0)
    }

    /// Jobs aside (a relay's name lookup) hold neither the ordered jobs nor
    /// one another: two stuck there, and both kinds of job still finish.
    @Test(arguments: backends)
    func jobsAsideHoldNoOtherWork(kind: BackendKind) throws {
        let loop = try EventLoop(backend: try makeBackend(kind), logger: Logger(label: "test"))
        let offload = try Offload(loop: loop)
        let gate = Gate()
        var finished: [String] = []
        for name in ["stuck 1", "stuck 2"] {
            offload.runAside({ () -> String in
                gate.open.wait()
                return name
            }) { finished.append($0) }
        }
        offload.runAside({ "aside" }) { finished.append($0) }
        offload.run({ "ordered" }) { finished.append($0) }
        try loop.run { finished.count == 2 }
        #expect(Set(finished) == ["ordered", "aside"])
        #expect(offload.pending == 2)
        gate.open.signal()
        gate.open.signal()
        try loop.run { finished.count == 4 }
        #expect(Set(finished.suffix(2)) == ["stuck 1", "stuck 2"])
        #expect(offload.pending == 0)
    }
}

@Suite struct EndpointTests {
    @Test func parsesTheForms() throws {
        #expect(try Endpoint.parse("10.0.0.2:9000", defaultPort: 7878) == Endpoint(host: "10.0.0.2", port: 9000))
        #expect(try Endpoint.parse("myhost", defaultPort: 7878) == Endpoint(host: "myhost", port: 7878))
        #expect(try Endpoint.parse("[::1]:80", defaultPort: 7878) == Endpoint(host: "::1", port: 80))
        #expect(try Endpoint.parse("[::1]", defaultPort: 7878) == Endpoint(host: "::1", port: 7878))
        #expect(try Endpoint.parse("fe80::1", defaultPort: 7878) == Endpoint(host: "fe80::1", port: 7878))
        #expect(try Endpoint.parse(":9000", defaultPort: 7878) == Endpoint(host: nil, port: 9000))
        #expect(try Endpoint.parse("9000", defaultPort: 7878) == Endpoint(host: nil, port: 9000))
        #expect(try Endpoint.parse("127.0.0.1:0", defaultPort: 1, allowPortZero: true).port == 0)
    }

    @Test func refusesBadPorts() {
        #expect(throws: Endpoint.ParseError.badPort("99999")) { try Endpoint.parse("h:99999", defaultPort: 1) }
        #expect(throws: Endpoint.ParseError.badPort("0")) { try Endpoint.parse("h:0", defaultPort: 1) }
        #expect(throws: Endpoint.ParseError.unclosedBracket("[::1:80")) { try Endpoint.parse("[::1:80", defaultPort: 1) }
    }

    @Test func resolvesLoopback() throws {
        let addrs = try Endpoint(host: "127.0.0.1", port: 7878).resolve()
        #expect(addrs.first?.description == "127.0.0.1:7878")
    }
}

@Suite struct ProbeTests {
    @Test func thisMachineHasIoUring() {
        // io_uring is enabled on the machines this project builds and tests
        // on (docs/ARCHITECTURE.md); if this fails, the reason says why and
        // every path runs on the fallback.
        #expect(Engine.ioUringUnavailableReason() == nil)
    }
}
