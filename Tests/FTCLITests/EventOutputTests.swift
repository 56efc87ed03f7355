import Foundation
import Testing
import FTTestSupport

/// `--json` output is written off the transfer's loop: a reader of stdout
/// that falls behind slows nothing but its own output.
@Suite(.serialized) struct EventOutputTests {
    /// 3,000 file-done lines (about 400 KB) cannot fit in a 64 KiB pipe
    /// nobody reads. The receiver wrote them on its loop thread, so the
    /// loop stopped at the first full pipe, the push with it, and the
    /// sender waited for acknowledgements that never came. Now the push
    /// completes while the lines wait, and every line arrives once the
    /// pipe is read.
    @Test func anUnreadStdoutDoesNotStopTheReceiver() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src/tree")
        for d in 0..<10 {
            let dir = tmp.sub("src/tree/d\(d)")
            for i in 0..<300 { writeFile(dir + "/f\(i)", patternBytes(100 + i, seed: UInt64(d * 1000 + i))) }
        }
        let dst = tmp.sub("dst")
        let fifo = tmp.path + "/events"
        #expect(mkfifo(fifo, 0o600) == 0)
        // Opened for reading first, so the receiver's shell can open it for writing.
        let reader = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        #expect(reader >= 0)
        defer { close(reader) }
        let recv = try Child("/bin/sh", ["-c", "exec '\(ftPath)' recv --once --json --listen 127.0.0.1:0 --dir '\(dst)' > '\(fifo)'"])
        var seen = [UInt8]()
        let readyBy = Date().addingTimeInterval(20)
        var buf = [UInt8](repeating: 0, count: 4096)
        // Only the ready line is read now: it ends the first write the receiver made.
        while !seen.contains(UInt8(ascii: "\n")), Date() < readyBy {
            let n = read(reader, &buf, buf.count)
            if n > 0 { seen += buf[..<n] } else { usleep(10_000) }
        }
        let ready = String(decoding: seen, as: UTF8.self)
        let listen = try #require(ready.components(separatedBy: "\"listen\":\"").dropFirst().first?.components(separatedBy: "\"").first,
                                  "no ready line: \(ready) \(recv.stderrSoFar)")

        let send = try run(ftPath, ["send", listen, src, "-q"], seconds: 60)
        #expect(send.status == 0, "the push stalled behind the receiver's unread stdout: \(send.stderr)")

        // Now read it all: every file-done line, then done.
        let drainBy = Date().addingTimeInterval(30)
        while Date() < drainBy {
            let n = read(reader, &buf, buf.count)
            if n > 0 { seen += buf[..<n]; continue }
            if n == 0 { break }   // the receiver exited and the pipe is empty
            usleep(10_000)
        }
        let finished = recv.wait(seconds: 20)
        #expect(finished.status == 0, "\(finished.stderr)")
        let events = jsonEvents(String(decoding: seen, as: UTF8.self))
        #expect(events.filter { $0["event"] as? String == "file-done" }.count == 3000)
        #expect(events.last?["event"] as? String == "done")
        #expect(!finished.stderr.contains("fell behind"), "nothing was dropped below the cap: \(finished.stderr)")
        let same = listTree(dst) == listTree(tmp.path + "/src")
        #expect(same, "the destination's tree differs from the source's")
    }
}
