import Foundation
import Testing
import FTTestSupport
import FTWire

/// A TCP relay between a sender and a receiver that records what the
/// sender wrote, and can flip one byte of it in passing.
final class Relay: @unchecked Sendable {
    let port: UInt16
    private let listener: CInt
    private let lock = NSLock()
    private var captured: [UInt8] = []
    /// Offset (in the sender's stream) of a byte to flip, if any.
    let flipAt: Int?

    init(to target: UInt16, flipAt: Int? = nil) {
        (listener, port) = loopbackListener()
        self.flipAt = flipAt
        Thread { [self] in
            let client = accept(listener, nil, nil)
            guard client >= 0, let upstream = try? RawPeer(port: target) else { return }
            let server = upstream.fd
            let down = Thread { self.pump(from: server, to: client, record: false) }
            down.start()
            pump(from: client, to: server, record: true)
            shutdown(server, Int32(SHUT_WR))
            while !down.isFinished { usleep(10_000) }
            withExtendedLifetime(upstream) {}
            close(client)
        }.start()
    }

    deinit { close(listener) }

    private func pump(from: CInt, to: CInt, record: Bool) {
        var buf = [UInt8](repeating: 0, count: 65_536)
        var total = 0
        while true {
            var n = buf.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            if record {
                if let f = flipAt, f >= total, f < total + n { buf[f - total] ^= 0x5A }
                lock.withLock { captured += buf[..<n] }
                total += n
            }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { Foundation.send(to, $0.baseAddress! + off, n - off, Int32(MSG_NOSIGNAL)) }
                if w <= 0 { n = 0; break }
                off += w
            }
            if n == 0 { break }
        }
        shutdown(to, Int32(SHUT_WR))
    }

    var bytes: [UInt8] { lock.withLock { captured } }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard needle.count <= haystack.count else { return false }
    outer: for i in 0...(haystack.count - needle.count) {
        for j in needle.indices where haystack[i + j] != needle[j] { continue outer }
        return true
    }
    return false
}

@Suite(.serialized) struct EncryptionTests {
    let marker = Array("FT-PLAINTEXT-MARKER-7d3f".utf8)

    func markedFile(_ tmp: TempDir) -> (String, [UInt8]) {
        var bytes: [UInt8] = []
        for i in 0..<2000 { bytes += marker + Array(" line \(i)\n".utf8) }
        let f = tmp.sub("src") + "/marked.txt"
        writeFile(f, bytes)
        return (f, bytes)
    }

    @Test func sealedPushesCarryNoPlaintextAndArriveIntact() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, bytes) = markedFile(tmp)

        // Control: without --encrypt the marker is on the wire.
        var recv = try FTReceiver(dir: tmp.sub("plain"), extra: ["--once"])
        var relay = Relay(to: recv.port)
        #expect(try run(ftPath, ["send", "127.0.0.1:\(relay.port)", src, "-q"]).status == 0)
        _ = recv.child.wait()
        #expect(contains(relay.bytes, marker), "the control push did not show the marker on the wire")

        recv = try FTReceiver(dir: tmp.sub("sealed"), extra: ["--once", "--encrypt"])
        relay = Relay(to: recv.port)
        let send = try run(ftPath, ["send", "127.0.0.1:\(relay.port)", src, "--encrypt", "--json"])
        #expect(send.status == 0, "\(send.stderr)")
        let end = recv.child.wait()
        #expect(end.status == 0)
        #expect(relay.bytes.count > bytes.count, "the relay saw \(relay.bytes.count) bytes")
        #expect(!contains(relay.bytes, marker), "plaintext crossed the wire under --encrypt")
        #expect(!contains(relay.bytes, Array("marked.txt".utf8)), "the file name crossed the wire in the clear")
        expectSame(readFile(tmp.path + "/sealed/marked.txt"), bytes, "sealed push")
        #expect(end.stdout.contains("copy (encrypted, "), "\(end.stdout)")
    }

    @Test func eachCipherCarriesATreeIntactAndAMismatchIsRefused() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let tree = tmp.sub("src/tree")
        writeFile(tree + "/big.bin", patternBytes((3 << 20) + 5, seed: 61))
        writeFile(tree + "/small", patternBytes(777, seed: 62))
        for cipher in ["aes-256-gcm", "chacha20-poly1305"] {
            let recv = try FTReceiver(dir: tmp.sub(cipher), extra: ["--once", "--encrypt", "--cipher", cipher])
            let send = try run(ftPath, ["send", recv.address, tree, "--encrypt", "--cipher", cipher, "-q"])
            #expect(send.status == 0, "\(cipher): \(send.stderr)")
            let end = recv.child.wait()
            #expect(end.stdout.contains("copy (encrypted, \(cipher))"), "\(end.stdout)")
            expectSame(readFile(tmp.path + "/\(cipher)/tree/big.bin"), patternBytes((3 << 20) + 5, seed: 61), cipher)
            expectSame(readFile(tmp.path + "/\(cipher)/tree/small"), patternBytes(777, seed: 62), cipher)
        }
        // The receiver takes one cipher, the sender offers the other.
        let recv = try FTReceiver(dir: tmp.sub("none"), extra: ["--once", "--cipher", "aes-256-gcm"])
        let r = try run(ftPath, ["send", recv.address, tree, "--encrypt", "--cipher", "chacha20-poly1305"])
        #expect(r.status == 4, "\(r.stderr)")
        #expect(r.stderr.contains("no cipher in common") && r.stderr.contains("--cipher"), "\(r.stderr)")
        #expect(recv.child.isRunning, "a refused handshake does not use up --once")
        _ = recv.stop()
        #expect(listTree(tmp.path + "/none").isEmpty)
        let bad = try run(ftPath, ["send", "127.0.0.1:1", tree, "--cipher", "aes-256-gcm"])
        #expect(bad.status == 2 && bad.stderr.contains("add --encrypt"), "\(bad.stderr)")
    }

    @Test(arguments: ["aes-256-gcm", "chacha20-poly1305"]) func aFlippedByteIsCaughtAndNothingIsWritten(_ cipher: String) throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, _) = markedFile(tmp)
        // Past the hello and the proof: inside the first sealed records,
        // then deep in the file's data.
        for flip in [400, 30_000] {
            let recv = try FTReceiver(dir: tmp.sub("dst\(flip)"), extra: ["--once", "--encrypt"])
            let relay = Relay(to: recv.port, flipAt: flip)
            let send = try run(ftPath, ["send", "127.0.0.1:\(relay.port)", src, "--encrypt", "--cipher", cipher])
            #expect(send.status == 1, "\(send.stderr)")
            let end = recv.child.wait()
            #expect(end.stdout.contains("failed authentication"), "\(cipher) at \(flip): \(end.stdout)")
            #expect(listTree(tmp.path + "/dst\(flip)").filter { !($0.split(separator: "/").last ?? "").hasPrefix(".ft-") }.isEmpty)
        }
    }

    @Test func encryptionNeedsACodeAndARequiringReceiverRefusesPlaintext() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, _) = markedFile(tmp)
        var recv = try FTReceiver(dir: tmp.sub("a"), extra: ["--once", "--no-auth"])
        var r = try run(ftPath, ["send", recv.address, src, "--encrypt"])
        #expect(r.status == 4)
        #expect(r.stderr.contains("--no-auth"), "\(r.stderr)")
        // Refused in the handshake: the --once receiver still waits for its push.
        #expect(recv.child.isRunning)
        _ = recv.stop()

        recv = try FTReceiver(dir: tmp.sub("b"), extra: ["--once", "--encrypt"])
        r = try run(ftPath, ["send", recv.address, src])
        #expect(r.status == 4)
        #expect(r.stderr.contains("encrypted pushes only"), "\(r.stderr)")
        #expect(recv.child.isRunning)
        _ = recv.stop()
        #expect(listTree(tmp.path + "/a").isEmpty && listTree(tmp.path + "/b").isEmpty)
    }

    @Test func sealedStdinAndTreesArriveIntact() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let tree = tmp.sub("src/tree")
        tmp.sub("src/tree/sub")
        writeFile(tree + "/sub/a.bin", patternBytes(3 << 20, seed: 31))
        writeFile(tree + "/empty", [])
        // Small files travel whole, built in place in a small-files frame
        // that is then sealed.
        let smallSizes = [1, 4096, 65_536]
        for (k, n) in smallSizes.enumerated() { writeFile(tree + "/small\(k)", patternBytes(n, seed: UInt64(40 + k))) }
        var recv = try FTReceiver(dir: tmp.sub("dst"), extra: ["--once", "--encrypt"])
        #expect(try run(ftPath, ["send", recv.address, tree, "--encrypt", "-q"]).status == 0)
        _ = recv.child.wait()
        expectSame(readFile(tmp.path + "/dst/tree/sub/a.bin"), patternBytes(3 << 20, seed: 31), "tree file")
        #expect(readFile(tmp.path + "/dst/tree/empty") == [])
        for (k, n) in smallSizes.enumerated() {
            expectSame(readFile(tmp.path + "/dst/tree/small\(k)"), patternBytes(n, seed: UInt64(40 + k)), "sealed small file \(k)")
        }

        let input = tmp.path + "/stdin.bin"
        writeFile(input, patternBytes((5 << 20) + 7, seed: 32))
        recv = try FTReceiver(dir: tmp.sub("dst2"), extra: ["--once", "--encrypt"])
        #expect(try run(ftPath, ["send", recv.address, "-", "--name", "s.bin", "--encrypt", "-q"], stdinFile: input).status == 0)
        _ = recv.child.wait()
        expectSame(readFile(tmp.path + "/dst2/s.bin"), patternBytes((5 << 20) + 7, seed: 32), "sealed stream")
    }
}
