import Foundation
import Synchronization
import Testing
import FTTestSupport
import FTTransfer

/// The Swift API (`push`, `Receiver`) on real loopback sockets and files:
/// what an embedding program sees, and that it says what `ft` says.
@Suite(.serialized) struct EmbeddingAPITests {
    /// Events in arrival order, from the push's or the receiver's thread.
    final class Events: Sendable {
        private let list = Mutex<[ProgressEvent]>([])
        func add(_ e: ProgressEvent) { list.withLock { $0.append(e) } }
        var all: [ProgressEvent] { list.withLock { $0 } }
    }

    @Test func pushesATreeToAReceiverAndReportsProgressAtABoundedRate() async throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.sub("src/photos")
        _ = tmp.sub("src/photos/small")
        let big = patternBytes(12 << 20, seed: 5)
        writeFile(src + "/big.raw", big)
        for i in 0..<50 { writeFile(src + "/small/\(i).txt", patternBytes(100 + i, seed: UInt64(i))) }
        let dst = tmp.sub("dst")

        let receiver = try Receiver(directory: dst, listen: "127.0.0.1:0", code: testCode)
        try receiver.start()
        var options = PushOptions()
        options.rateLimit = 8 << 20  // about 1.5 s: several progress intervals
        let events = Events()
        let summary = try await push([src], to: "127.0.0.1:\(receiver.port)", code: testCode, options: options) { events.add($0) }
        receiver.stop()
        let outcome = try await receiver.outcome()

        #expect(summary.files == 51 && summary.bytes == UInt64(big.count + (0..<50).reduce(0) { $0 + 100 + $1 }))
        #expect(summary.verified)
        expectSame(readFile(dst + "/photos/big.raw"), big, "big.raw")
        for i in 0..<50 { expectSame(readFile(dst + "/photos/small/\(i).txt"), patternBytes(100 + i, seed: UInt64(i)), "\(i).txt") }
        #expect(outcome.succeeded == 1 && outcome.interrupted)

        let all = events.all
        guard case .started = all.first else { Issue.record("first event: \(String(describing: all.first))"); return }
        guard case .finished(let last) = all.last else { Issue.record("last event: \(String(describing: all.last))"); return }
        #expect(last.bytes == summary.bytes)
        // At most one snapshot per 200 ms of the push's own clock; only the
        // one just before the end is forced.
        let stamps = all.compactMap { e -> Double? in if case .progress(let p) = e { return p.elapsed } else { return nil } }
        #expect(stamps.count >= 3, "\(stamps)")
        let gaps = zip(stamps.dropFirst(), stamps).map { $0 - $1 }
        #expect(gaps.dropLast().allSatisfy { $0 >= 0.199 }, "\(gaps)")
    }

    @Test func cancellingMidFileKeepsThePartialAndTheNextPushResumes() async throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let (src, bytes) = tmp.sourceFile(48 << 20, seed: 9)
        let dst = tmp.sub("dst")
        let receiver = try Receiver(directory: dst, listen: "127.0.0.1:0", code: testCode)
        try receiver.start()
        defer { receiver.stop() }
        let destination = "127.0.0.1:\(receiver.port)"

        var slow = PushOptions()
        slow.rateLimit = 16 << 20
        // The push's own thread cancels its task, from the progress
        // callback, so a busy test machine cannot let the push finish first.
        let handle = Mutex<Task<PushSummary, any Error>?>(nil)
        let pushing = Task {
            try await push([src], to: destination, code: testCode, options: slow) { e in
                // Past 16 MiB the receiver has written a resume map.
                if case .progress(let p) = e, p.bytes >= 24 << 20 { handle.withLock { $0?.cancel() } }
            }
        }
        handle.withLock { $0 = pushing }
        let result = await pushing.result
        guard case .failure(let error as FTError) = result else {
            Issue.record("the push was not cancelled: \(result)")
            return
        }
        #expect(error.kind == .cancelled, "\(error)")
        #expect(error.description.contains("cancelled") && error.description.contains("resumes"), "\(error)")

        // Nothing under the final name; the partial stays (the receiver
        // notices the hang-up a moment later).
        var partials: [String] = []
        for _ in 0..<100 {
            partials = listTree(dst).filter { $0.hasPrefix(".ft-") }
            if !partials.isEmpty { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!FileManager.default.fileExists(atPath: dst + "/data.bin"))
        #expect(partials.count >= 1, "\(listTree(dst))")

        let summary = try await push([src], to: destination, code: testCode)
        expectSame(readFile(dst + "/data.bin"), bytes, "resumed file")
        #expect(summary.skippedBytes >= 16 << 20, "resumed \(summary.skippedBytes) bytes")
        #expect(summary.bytes + summary.skippedBytes == UInt64(bytes.count))
        #expect(listTree(dst) == ["data.bin"], "\(listTree(dst))")
        receiver.stop()
        _ = try await receiver.outcome()
    }

    @Test func aTaskCancelledBeforeThePushStartsSendsNothing() async throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        writeFile(tmp.sub("src") + "/a", [1, 2, 3])
        let dst = tmp.sub("dst")
        let receiver = try Receiver(directory: dst, listen: "127.0.0.1:0", code: testCode)
        try receiver.start()
        let pushing = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await push([tmp.path + "/src/a"], to: "127.0.0.1:\(receiver.port)", code: testCode)
        }
        let result = await pushing.result
        guard case .failure(let error as FTError) = result else { Issue.record("\(result)"); return }
        #expect(error.kind == .cancelled)
        #expect(listTree(dst).isEmpty)
        receiver.stop()
        let outcome = try await receiver.outcome()
        #expect(outcome.succeeded == 0)
    }

    @Test func aReceiverStoppedBeforeItRunsReturnsAtOnceAndRunsOnlyOnce() async throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let receiver = try Receiver(directory: tmp.sub("dst"), listen: "127.0.0.1:0", code: nil)
        receiver.stop()
        let outcome = try await receiver.run()
        #expect(outcome.interrupted && outcome.sessions == 0)
        await #expect(throws: FTError.self) { _ = try await receiver.run() }
    }

    /// The API's errors read as the CLI's: the same scenario through both.
    @Test func errorsCarryTheSameTextsAsTheCLI() async throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let file = tmp.sub("src") + "/a.txt"
        writeFile(file, Array("hello".utf8))
        writeFile(tmp.sub("home") + "/.bashrc", Array("alias ls=rm".utf8))

        func viaAPI(_ paths: [String], _ destination: String, code: String?) async -> FTError? {
            do {
                _ = try await push(paths, to: destination, code: code)
                return nil
            } catch {
                return error
            }
        }
        /// ft send's stderr, and its exit status checked against the table.
        func viaCLI(_ paths: [String], _ destination: String, code: String, status: Int32) throws -> String {
            let r = try run(ftPath, ["send", destination] + paths, environment: ["FT_CODE": code])
            #expect(r.status == status, "\(r.stderr)")
            return r.stderr
        }

        // A wrong code.
        let wrongCode = "zzzz-zzzz-zzzz"
        do {
            let recv = try Receiver(directory: tmp.sub("dst1"), listen: "127.0.0.1:0", code: testCode)
            try recv.start()
            let e = try #require(await viaAPI([file], "127.0.0.1:\(recv.port)", code: wrongCode))
            #expect(e.kind == .refusedByPeer && e.refusal == .wrongCode, "\(e.kind) \(String(describing: e.refusal))")
            let cli = try viaCLI([file], "127.0.0.1:\(recv.port)", code: wrongCode, status: 3)
            #expect(cli.contains("ft: " + e.description), "API: \(e)\nCLI: \(cli)")
            recv.stop()
            _ = try await recv.outcome()
        }
        // Nothing listening.
        do {
            let port = freePort()
            let e = try #require(await viaAPI([file], "127.0.0.1:\(port)", code: testCode))
            #expect(e.kind == .system && e.errno == ECONNREFUSED && e.path?.hasPrefix("127.0.0.1:\(port)") == true, "\(e)")
            let cli = try viaCLI([file], "127.0.0.1:\(port)", code: testCode, status: 6)
            #expect(cli.contains("ft: " + e.description), "API: \(e)\nCLI: \(cli)")
        }
        // A host that does not resolve.
        do {
            let e = try #require(await viaAPI([file], "no-such-host.invalid", code: testCode))
            #expect(e.kind == .system && e.path?.contains("no-such-host.invalid") == true, "\(e)")
            let cli = try viaCLI([file], "no-such-host.invalid", code: testCode, status: 6)
            #expect(cli.contains("ft: " + e.description), "API: \(e)\nCLI: \(cli)")
        }
        // A refused entry: a start-up file the receiver does not take.
        do {
            let recv = try Receiver(directory: tmp.sub("dst2"), listen: "127.0.0.1:0", code: testCode)
            try recv.start()
            let e = try #require(await viaAPI([tmp.path + "/home/.bashrc"], "127.0.0.1:\(recv.port)", code: testCode))
            #expect(e.kind == .refusedByPeer && e.refusal == .refused, "\(e.kind) \(String(describing: e.refusal)): \(e)")
            #expect(e.description.contains(".bashrc"))
            let cli = try viaCLI([tmp.path + "/home/.bashrc"], "127.0.0.1:\(recv.port)", code: testCode, status: 4)
            #expect(cli.contains("ft: " + e.description), "API: \(e)\nCLI: \(cli)")
            #expect(listTree(tmp.path + "/dst2").isEmpty)
            recv.stop()
            _ = try await recv.outcome()
        }
        // Bad input never reaches the network, and reads as ft send's usage error does.
        let e = try #require(await viaAPI([], "127.0.0.1:1", code: nil))
        #expect(e.kind == .invalidRequest)
    }
}
