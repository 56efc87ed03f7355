import Foundation
import FTTransfer
import FTWire
import FTBench

/// A hand-driven TCP peer that speaks (or abuses) the protocol with the
/// wire module's own encoder, for hostile-sender tests.
package final class RawPeer {
    /// Closed once, by `close()`, `reset()` or deinit: closing it directly
    /// as well would close whatever fd a sibling test opened meanwhile.
    package private(set) var fd: CInt
    package let port: UInt16

    package init(port: UInt16) throws {
        self.port = port
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { throw TestFailure("connect to 127.0.0.1:\(port) failed: errno \(errno)") }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    package func close() {
        guard fd >= 0 else { return }
        Foundation.close(fd)
        fd = -1
    }

    /// Closes with a RST instead of a FIN (SO_LINGER 0).
    package func reset() {
        var lin = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    /// Drops the connection now (the fd is closed later by deinit).
    package func hangUp() { shutdown(fd, Int32(SHUT_RDWR)) }

    package func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }

    /// After a proven handshake, frames are tagged as ft tags them.
    package private(set) var mac: SessionMAC?

    package func send(_ frame: Frame) { send(encoded(frame)) }

    /// The frame's bytes as this connection sends them (tagged once proven;
    /// each call takes the next place in the tag sequence).
    package func encoded(_ frame: Frame) -> [UInt8] {
        var bytes = FrameCodec.encode(frame)
        mac?.tag(&bytes, type: frame.type)
        return bytes
    }

    /// Reads exactly n bytes; nil on EOF, error or timeout.
    package func read(_ n: Int) -> [UInt8]? { readExactly(fd, n) }

    /// The next frame; the receiver's banner (its opening, before
    /// anything is read) is taken in passing.
    package func readFrame() -> Frame? {
        let f = readAnyFrame()
        if !openingRead {
            openingRead = true
            if case .error(let e)? = f, e.isBanner { return readAnyFrame() }
        }
        return f
    }

    private var openingRead = false

    /// The next frame as it came, the banner included.
    package func readAnyFrame() -> Frame? {
        guard let prefix = read(FramePrefix.size) else { return nil }
        let extra = mac == nil ? 0 : UInt32(SessionMAC.tagSize)
        guard let p = try? prefix.withUnsafeBytes({ try FramePrefix.decode($0, extra: extra) }) else { return nil }
        let body = p.length == 0 ? [] : (read(Int(p.length)) ?? [])
        guard body.count == Int(p.length) else { return nil }
        return prefix.withUnsafeBytes { pre in
            body.withUnsafeBytes { b in
                guard let (plain, plainBody) = mac.map({ $0.untag(p, prefix: pre, body: b) }) ?? (p, b) else { return nil }
                return try? FrameCodec.decodeBody(plain, plainBody)
            }
        }
    }

    /// Frames until the receiver closes.
    package func readUntilClosed() -> [Frame] {
        var out: [Frame] = []
        while let f = readFrame() { out.append(f) }
        return out
    }

    package let session = (0..<16).map { _ in UInt8.random(in: 0...255) }
    package let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }

    /// Sends hello, reads the receiver's, and proves the code if asked
    /// (with `code`, or the test code); returns the receiver's reply to the
    /// proof, or its hello when no proof was asked.
    @discardableResult
    package func handshake(code: String = testCode, features: Features = [.xxh3, .poly1305Tags]) -> Frame? {
        send(.hello(Hello(role: .sender, features: features, sessionID: session, nonce: nonce)))
        let reply = readFrame()
        guard case .hello(let h)? = reply, h.features.contains(.auth) else { return reply }
        let keys = SessionKeys(code: AuthCode.normalize(code)!, sessionID: session, senderNonce: nonce, receiverNonce: h.nonce)
        send(.auth(keys.proof(.sender)))
        let answer = readFrame()
        // The receiver proved the code too: from here on frames are tagged.
        if case .auth(let proof)? = answer, AuthCode.matches(proof, keys.proof(.receiver)) {
            mac = SessionMAC(keys, role: .sender, algorithm: features.contains(.poly1305Tags) ? .agreed(receiverHello: h.features) : .hmacSHA256)
        }
        return answer
    }

    /// Handshake, push-info, one batch of `entries` and the totals;
    /// returns what the receiver answered.
    package func offer(_ entries: [ManifestEntry], flags: PushInfo.Flags = [],
                       features: Features = [.xxh3, .poly1305Tags]) -> Frame? {
        offerWithoutReading(entries, flags: flags, features: features)
        return readFrame()
    }

    @discardableResult
    package func offerWithoutReading(_ entries: [ManifestEntry], flags: PushInfo.Flags = [],
                                     features: Features = [.xxh3, .poly1305Tags]) -> Frame? {
        let h = handshake(features: features)
        send(.pushInfo(PushInfo(flags: flags)))
        send(.batch(Batch(batchID: 1, entries: entries)))
        let total = entries.reduce(UInt64(0)) { $0 + ($1.kind == .file ? $1.size : 0) }
        send(.totals(Totals(entries: UInt64(entries.count), bytes: total)))
        return h
    }
}

/// Reads exactly n bytes from a blocking socket; nil on EOF, error or timeout.
package func readExactly(_ fd: CInt, _ n: Int) -> [UInt8]? {
    var buf = [UInt8](repeating: 0, count: n)
    var got = 0
    while got < n {
        let r = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, n - got, 0) }
        // Other tests' children exiting deliver SIGCHLD here.
        if r < 0, errno == EINTR { continue }
        if r <= 0 { return nil }
        got += r
    }
    return buf
}

/// One frame as its raw bytes (prefix, then the body it announces, up to
/// 1 MiB), undecoded: what a relay in the middle passes along.
package func readRawFrame(_ fd: CInt) -> [UInt8]? {
    guard let prefix = readExactly(fd, FramePrefix.size) else { return nil }
    let length = Int(prefix[4]) << 24 | Int(prefix[5]) << 16 | Int(prefix[6]) << 8 | Int(prefix[7])
    guard length <= 1 << 20 else { return nil }
    guard let body = length == 0 ? [] : readExactly(fd, length) else { return nil }
    return prefix + body
}

package func fileEntry(_ path: [UInt8], id: UInt32 = 1, size: UInt64 = 5, kind: ManifestEntry.Kind = .file) -> ManifestEntry {
    ManifestEntry(fileID: id, kind: kind, path: path, mode: 0o644, size: size, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
}

extension Frame {
    package var errorMessage: String? {
        if case .error(let e) = self { return e.message }
        return nil
    }
}

/// A listening TCP socket on 127.0.0.1 and its port, for fake peers.
/// What a fake receiver sends first, as ft recv does on accept.
package func sendBanner(_ fd: CInt) {
    let banner = FrameCodec.encode(.error(.banner))
    _ = banner.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
}

package func loopbackListener() -> (CInt, UInt16) {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
    listen(listener, 1)
    return (listener, UInt16(bigEndian: addr.sin_port))
}

/// A port for a peer tool to listen on (see `Ports.free`: outside the
/// ephemeral range, so no outgoing connection of another test takes it).
package func freePort() -> UInt16 { Ports.free() }

/// Lines a raw TCP chat peer sees, read with a timeout.
package final class LinePeer {
    package let peer: RawPeer
    private var buffer: [UInt8] = []

    package init(port: UInt16) throws { peer = try RawPeer(port: port) }

    package func say(_ text: String) { peer.send(Array((text + "\n").utf8)) }
    package func sayBytes(_ bytes: [UInt8]) { peer.send(bytes) }

    /// The next line, or nil on close or after the socket's 10 s timeout.
    package func line() -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let l = Array(buffer[..<nl])
                buffer.removeFirst(nl + 1)
                return String(decoding: l, as: UTF8.self)
            }
            guard let chunk = peer.readSome() else { return nil }
            buffer += chunk
        }
    }

    /// Lines up to and including the first that contains `marker`.
    package func lines(until marker: String) -> [String] {
        var out: [String] = []
        while let l = line() {
            out.append(l)
            if l.contains(marker) { break }
        }
        return out
    }
}

extension RawPeer {
    package func readSome() -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            return n > 0 ? Array(buf[..<n]) : nil
        }
    }
}

package func jsonEvents(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

package func rssKiB(_ pid: Int32) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}


package func doneEvent(_ output: String) -> [String: Any]? {
    jsonEvents(output).first { $0["event"] as? String == "done" }
}


/// A frame prefix's 8 bytes, for peers that send a frame's start only.
package func prefixBytes(_ type: FrameType, length: UInt32) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: FramePrefix.size)
    out.withUnsafeMutableBytes { FramePrefix(type: type, length: length).encode(into: $0) }
    return out
}
