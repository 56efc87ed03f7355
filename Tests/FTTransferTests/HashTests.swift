import Testing
import FTTestSupport
import CXXHash
import FTTransfer
import FTWire

@Suite struct HashTests {
    /// Our dispatching xxh3 (AVX2 on this CPU) against the system library.
    @Test(arguments: [0, 1, 15, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025, 65_536 + 7, (1 << 20) + 3])
    func matchesTheReferenceLibrary(size: Int) {
        let bytes = patternBytes(size, seed: UInt64(size) &+ 99)
        let reference = bytes.withUnsafeBytes { XXH3_128bits($0.baseAddress, $0.count) }
        let expected = Digest128(high: reference.high64, low: reference.low64)
        #expect(bytes.withUnsafeBytes { StreamHasher.hash($0) } == expected)
        // Fed in uneven pieces, as chunks arrive.
        let h = StreamHasher()
        var at = 0
        var step = 1
        while at < size {
            let n = min(step, size - at)
            bytes.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[at..<at + n])) }
            at += n
            step = step * 3 + 1
        }
        #expect(h.digest() == expected, "implementation \(StreamHasher.implementation)")
    }
}

@Suite struct SplicePipesTests {
    @Test func socketReadsStayInOrderAndOneDrainRunsAtATime() {
        var l = SplicePipes(pipes: 3, capacity: 100)
        l.start(offset: 1000, length: 250)
        do { let got = l.next(); #expect(got == [.fill(pipe: 0, length: 100)]) }
        do { let got = l.next(); #expect(got == []) }  // one fill at a time
        l.filled(pipe: 0, bytes: 60)  // short: the rest stays on the socket
        do { let got = l.next(); #expect(got == [.drain(pipe: 0, length: 60, offset: 1000), .fill(pipe: 1, length: 100)]) }
        l.filled(pipe: 1, bytes: 100)
        // pipe 0 still drains: pipe 1 waits, pipe 2 fills.
        do { let got = l.next(); #expect(got == [.fill(pipe: 2, length: 90)]) }
        do { let got = l.drained(pipe: 0, bytes: 60); #expect(got == 1000..<1060) }
        l.filled(pipe: 2, bytes: 90)
        do { let got = l.next(); #expect(got == [.drain(pipe: 1, length: 100, offset: 1060)]) }
        do { let got = l.drained(pipe: 1, bytes: 40); #expect(got == 1060..<1100) }  // a short write
        do { let got = l.next(); #expect(got == [.drain(pipe: 1, length: 60, offset: 1100)]) }
        do { let got = l.drained(pipe: 1, bytes: 60); #expect(got == 1100..<1160) }
        do { let got = l.next(); #expect(got == [.drain(pipe: 2, length: 90, offset: 1160)]) }
        #expect(!l.finished)
        do { let got = l.drained(pipe: 2, bytes: 90); #expect(got == 1160..<1250) }
        #expect(l.finished)
        do { let got = l.next(); #expect(got == []) }
    }

    @Test func relayTeesBeforeTheFileAndSendsInStreamOrder() {
        var l = SplicePipes(pipes: 2, capacity: 100, relaying: true)
        l.start(offset: 0, length: 150)
        do { let got = l.next(canSend: true); #expect(got == [.fill(pipe: 0, length: 100)]) }
        l.filled(pipe: 0, bytes: 100)
        // Tee first; the file drain of pipe 0 waits for it.
        do { let got = l.next(canSend: true); #expect(got == [.tee(pipe: 0, length: 100), .fill(pipe: 1, length: 50)]) }
        l.filled(pipe: 1, bytes: 50)
        do { let got = l.next(canSend: true); #expect(got == [.tee(pipe: 1, length: 50)]) }
        // Pipe 1 is tee'd first, but pipe 0 holds earlier bytes: no send yet.
        do { let got = l.teed(pipe: 1, bytes: 50); #expect(got) }
        do { let got = l.next(canSend: true); #expect(got == [.drain(pipe: 1, length: 50, offset: 100)]) }
        do { let got = l.teed(pipe: 0, bytes: 100); #expect(got) }
        // The control channel is busy: no send, but the file side goes on.
        do { let got = l.next(canSend: false); #expect(got == []) }
        do { let got = l.next(canSend: true); #expect(got == [.send(pipe: 0, length: 100)]) }
        l.sent(pipe: 0, bytes: 30)  // short: the rest of pipe 0 goes before pipe 1
        do { let got = l.drained(pipe: 1, bytes: 50); #expect(got == 100..<150) }
        do { let got = l.next(canSend: true); #expect(got == [.send(pipe: 0, length: 70), .drain(pipe: 0, length: 100, offset: 0)]) }
        l.sent(pipe: 0, bytes: 70)
        do { let got = l.next(canSend: true); #expect(got == [.send(pipe: 1, length: 50)]) }
        l.sent(pipe: 1, bytes: 50)
        #expect(!l.finished)
        _ = l.drained(pipe: 0, bytes: 100)
        #expect(l.finished)
    }

    @Test func aLostRelayLetsTheFileSideFinish() {
        var l = SplicePipes(pipes: 2, capacity: 100, relaying: true)
        l.start(offset: 0, length: 200)
        _ = l.next(canSend: true)
        l.filled(pipe: 0, bytes: 100)
        do { let got = l.next(canSend: true); #expect(got == [.tee(pipe: 0, length: 100), .fill(pipe: 1, length: 100)]) }
        do { let got = l.teed(pipe: 0, bytes: 100); #expect(got) }
        do { let got = l.next(canSend: true); #expect(got == [.send(pipe: 0, length: 100), .drain(pipe: 0, length: 100, offset: 0)]) }
        l.dropRelay()
        l.filled(pipe: 1, bytes: 100)
        // No tee for pipe 1 now; its drain waits for pipe 0's.
        do { let got = l.next(canSend: true); #expect(got == []) }
        _ = l.drained(pipe: 0, bytes: 100)
        do { let got = l.next(canSend: true); #expect(got == [.drain(pipe: 1, length: 100, offset: 100)]) }
        _ = l.drained(pipe: 1, bytes: 100)
        #expect(!l.finished)  // pipe 0's send is still in flight
        l.abandoned(pipe: 0)
        #expect(l.finished)
    }

    @Test func aShortTeeEndsTheRelay() {
        var l = SplicePipes(pipes: 1, capacity: 100, relaying: true)
        l.start(offset: 0, length: 100)
        _ = l.next(canSend: true)
        l.filled(pipe: 0, bytes: 100)
        _ = l.next(canSend: true)
        do { let got = l.teed(pipe: 0, bytes: 60); #expect(!got) }
    }
}

@Suite struct ReceivedRangesTests {
    @Test func mergesAndRefusesOverlap() {
        var r = ReceivedRanges()
        do { let got = r.insert(10..<20); #expect(got) }
        #expect(r.contiguous == 0)
        do { let got = r.insert(0..<10); #expect(got) }
        #expect(r.contiguous == 20)
        do { let got = r.insert(30..<40); #expect(got) }
        do { let got = r.insert(35..<36); #expect(!got) }
        do { let got = r.insert(19..<31); #expect(!got) }
        do { let got = r.insert(20..<30); #expect(got) }
        #expect(r.ranges == [0..<40])
        #expect(r.total == 40)
    }
}
