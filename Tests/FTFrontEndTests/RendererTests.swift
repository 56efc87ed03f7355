import Foundation
import Testing
@testable import FTFrontEnd
import FTEngine
@testable import FTTransfer
import FTWire

@Suite struct JSONTests {
    @Test func textIsValidJSONWhateverTheStrings() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{07} esc \u{1B}[2J 你好 👋"
        let v = JSON.object([("s", .string(tricky)), ("n", .null), ("b", .bool(true)), ("i", .int(-3)), ("u", .uint(UInt64.max)),
                             ("d", .double(1.23456)), ("inf", .double(.infinity)), ("a", .array([.int(1), .string("x")]))])
        let text = v.text
        #expect(!text.contains("\n"), "NDJSON: one line")
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(parsed["s"] as? String == tricky)
        #expect(parsed["n"] is NSNull && parsed["inf"] is NSNull)
        #expect(parsed["i"] as? Int == -3 && parsed["d"] as? Double == 1.235)
        #expect((parsed["u"] as? NSNumber)?.uint64Value == UInt64.max)
        #expect(text.hasPrefix("{\"s\":"), "keys keep their order")
    }
}

@Suite struct ProgressRendererTests {
    func snapshot(path: String, bytes: UInt64, total: UInt64?, rate: Double = 123_456_789) -> ProgressEvent.Snapshot {
        ProgressEvent.Snapshot(session: "ab12", path: path, fileBytes: bytes, fileSize: total, bytes: bytes, totalBytes: total,
                               rate: rate, elapsed: 2)
    }

    @Test(arguments: [40, 50, 80, 120, 200])
    func theBarFillsTheLineButTheLastColumn(columns: Int) {
        for path in ["f.bin", "a/very/long/directory/name/that/goes/on/and/on/and/on/file-with-a-long-name.bin",
                     "照片/二〇二六年/家族旅行の写真.jpg", "🎉 party 🎉.mov"] {
            let line = ProgressRenderer.bar(snapshot(path: path, bytes: 1 << 29, total: 1 << 30), columns: columns)
            #expect(line.displayWidth == columns - 1, "\(columns) columns: '\(line)' is \(line.displayWidth) wide")
            #expect(line.contains(" 50%") && line.contains("117.7 MiB/s") && line.contains("0:02"), "'\(line)'")
            if columns >= 120 {
                #expect(line.contains("[") && line.contains("512.0 MiB/1.0 GiB") && line.contains("ETA"), "all of it fits: '\(line)'")
            }
            // What goes on a narrow terminal goes in this order: the bar, the ETA, the byte counts.
            if line.contains("512.0 MiB/") { #expect(line.contains("ETA") || !line.contains("[")) }
            if line.contains("ETA") { #expect(line.contains("512.0 MiB/")) }
        }
        let narrow = ProgressRenderer.bar(snapshot(path: "f.bin", bytes: 1 << 29, total: 1 << 30), columns: 40)
        #expect(!narrow.contains("[") && !narrow.contains("ETA"), "'\(narrow)'")
        let unknown = ProgressRenderer.bar(snapshot(path: "stdin", bytes: 5, total: nil), columns: 80)
        #expect(unknown.contains("--:--") && !unknown.contains("%"), "no percentage without a total")
    }

    @Test func aLongNameIsCutInTheMiddleByColumns() {
        let line = ProgressRenderer.bar(snapshot(path: "head-" + String(repeating: "x", count: 200) + "-tail.bin", bytes: 0, total: 10), columns: 80)
        #expect(line.hasPrefix("head-") && line.contains("…") && line.contains("-tail.bin"))
        let wide = String(repeating: "写", count: 40) + ".txt"
        let cut = wide.truncatedMiddle(columns: 21)
        #expect(cut.displayWidth <= 21 && cut.hasSuffix(".txt") && cut.contains("…"), "'\(cut)'")
        #expect("写真".displayWidth == 4 && "e\u{301}".displayWidth == 1 && "🎉".displayWidth == 2)
    }

    /// Off a terminal: a push shorter than the line interval prints its
    /// start and its end, no progress line (one printed at once used to
    /// show the first 4 KiB, before the start line of a receiver).
    @Test func aShortPushPrintsNoProgressLine() throws {
        var err: [CInt] = [0, 0]
        #expect(pipe(&err) == 0)
        let renderer = ProgressRenderer(program: "ft", verb: "received", json: false, quiet: false, human: Console(fd: err[1]))
        #expect(renderer.mode == .lines)
        renderer.handle(.progress(snapshot(path: "f", bytes: 4096, total: nil)))
        renderer.handle(.started(.init(session: "s", peer: "p", files: 2, directories: 0, totalBytes: 8192, skippedBytes: 0)))
        renderer.handle(.progress(snapshot(path: "f", bytes: 8192, total: 8192)))
        close(err[1])
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = read(err[0], &bytes, bytes.count)
        close(err[0])
        let lines = String(decoding: bytes[..<max(0, n)], as: UTF8.self).split(separator: "\n")
        #expect(lines == ["ft: receiving 2 entries, 8.0 KiB, from p"], "\(lines)")
    }

    @Test func everyEventBecomesOneObjectNamedByItsKind() throws {
        let digest = Digest128(high: 1, low: 2)
        let engine = EngineReport(backend: .ioUring, dataPath: "splice", stats: EngineStats())
        let events: [(ProgressEvent, String)] = [
            (.started(.init(session: "s", peer: "p", files: 2, directories: 1, totalBytes: nil, skippedBytes: 3)), "start"),
            (.progress(snapshot(path: "f", bytes: 1, total: 2)), "progress"),
            (.fileDone(.init(session: "s", path: "f", bytes: 2, digest: digest)), "file-done"),
            (.finished(.init(session: "s", peer: "p", files: 1, directories: 0, bytes: 2, skippedBytes: 0, seconds: 1, verified: true,
                             digests: [("f", digest)], engine: engine)), "done"),
            (.failed(.init(session: "s", peer: "p", error: FTError(.io(IOError(.connectionRefused, "connect to", "p"))))), "error"),
        ]
        for (event, name) in events {
            let text = event.jsonLine
            let o = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            #expect(o["event"] as? String == name)
            #expect(o["v"] as? Int == 1, "every event says which version of these events it is")
            #expect(o["session"] as? String == (name == "progress" ? "ab12" : "s"))
        }
        let done = events[3].0.jsonLine
        #expect(done.contains("\"hashes\":{\"f\":\"\(digest.hex)\"}") && done.contains("\"data_path\":\"splice\""))
        #expect(events[0].0.jsonLine.contains("\"total_bytes\":null"))
        let error = try #require(try JSONSerialization.jsonObject(with: Data(events[4].0.jsonLine.utf8)) as? [String: Any])
        #expect(error["kind"] as? String == "system" && error["errno"] as? Int == Int(ECONNREFUSED) && error["path"] as? String == "p", "\(error)")
        #expect((error["message"] as? String)?.contains("ECONNREFUSED") == true)
    }
}

@Suite struct SizesTests {
    @Test func parseFormatAndRates() {
        #expect(Sizes.parse("4M") == 4 << 20 && Sizes.parse("256k") == 256 << 10 && Sizes.parse("1.5GiB") == 3 << 29)
        #expect(Sizes.parse("4096") == 4096 && Sizes.parse("") == nil && Sizes.parse("x") == nil && Sizes.parse("-1") == nil)
        #expect(Sizes.parse("99999999999T") == nil, "overflow is refused")
        #expect(Sizes.format(1536) == "1.5 KiB" && Sizes.format(812) == "812 B")
        #expect(Sizes.rate(2.5 * Double(1 << 30)) == "2.50 GiB/s" && Sizes.rate(16 * Double(1 << 20)) == "16.0 MiB/s", "the units of --limit")
        #expect(Sizes.duration(3725) == "1:02:05" && Sizes.duration(65) == "1:05" && Sizes.duration(.nan) == "--:--")
    }
}

/// `--json` events go through `EventQueue`: the push's thread only appends.
@Suite struct EventQueueTests {
    /// Output nobody reads: posting never waits; past the cap file-done
    /// lines are dropped and counted on stderr, a start event never is, and
    /// what was kept arrives in order once the pipe is read.
    @Test(.timeLimit(.minutes(2))) func aStalledReaderCostsLinesNotTheTransfer() throws {
        var out: [CInt] = [0, 0], err: [CInt] = [0, 0]
        #expect(pipe(&out) == 0 && pipe(&err) == 0)
        let renderer = ProgressRenderer(program: "ft", verb: "sent", json: true, quiet: false,
                                        human: Console(fd: err[1]), jsonTo: Console(fd: out[1]))
        let posts = EventQueue.cap + 10_000
        let started = ProgressEvent.Started(session: "ab12", peer: "h:1", files: posts, directories: 0, totalBytes: nil, skippedBytes: 0)
        // With the pipe full (64 KiB, a few hundred lines) a writer on this
        // thread would block here for good (the time limit ends the test).
        renderer.handle(.started(started))
        for i in 0..<posts {
            renderer.handle(.fileDone(.init(session: "ab12", path: "f\(i)", bytes: UInt64(i), digest: nil)))
        }
        renderer.handle(.started(started))

        let readEnd = out[0]
        let reader = Thread.detachNewThreadWithResult { () -> [UInt8] in
            var all: [UInt8] = [], buf = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = read(readEnd, &buf, buf.count)
                if n <= 0 { return all }
                all += buf[..<n]
            }
        }
        renderer.flush()
        close(out[1]); close(err[1])
        let lines = String(decoding: reader.wait(), as: UTF8.self).split(separator: "\n")
        var errBytes = [UInt8](repeating: 0, count: 4096)
        let e = read(err[0], &errBytes, errBytes.count)
        let warning = String(decoding: errBytes[..<max(0, e)], as: UTF8.self)
        close(out[0]); close(err[0])

        let files = lines.filter { $0.contains("\"file-done\"") }
        let dropped = Int(warning.split(separator: " ").first { Int($0) != nil } ?? "0") ?? 0
        #expect(dropped > 0 && warning.contains("standard output fell behind"), "\(warning)")
        #expect(files.count + dropped == posts, "\(files.count) written, \(dropped) dropped")
        #expect(lines.first?.contains("\"start\"") == true && lines.last?.contains("\"start\"") == true,
                "start events are never dropped")
        // In order: the numbers written only grow.
        let numbers = files.compactMap { $0.components(separatedBy: "\"path\":\"f").dropFirst().first?.prefix { $0.isNumber } }.compactMap { Int($0) }
        #expect(numbers == numbers.sorted() && numbers.count == files.count)
        // Lines leave many to a write: each still arrives whole.
        let torn = lines.filter { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] == nil }
        #expect(torn.isEmpty, "\(torn.count) lines are not JSON objects, first: \(torn.first ?? "")")
    }
}

private extension Thread {
    final class Result<T>: @unchecked Sendable {
        var value: T?
        let done = DispatchSemaphore(value: 0)
        func wait() -> T { done.wait(); return value! }
    }

    static func detachNewThreadWithResult<T>(_ body: @escaping @Sendable () -> T) -> Result<T> {
        let r = Result<T>()
        Thread.detachNewThread { r.value = body(); r.done.signal() }
        return r
    }
}
