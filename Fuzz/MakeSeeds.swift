// Writes the seed corpus: one file per frame kind, plus streams of frames
// and some peer strings. Built and run by `tools/fuzz --seeds`.

@main
struct MakeSeeds {
    static func main() {
        let dir = CommandLine.arguments[1]
        var seeds: [(String, [UInt8])] = []
        var link = ManifestEntry(fileID: 4, kind: .symlink, path: Array("photos/latest".utf8), mode: 0o777, size: 0, mtimeSeconds: 1, mtimeNanoseconds: 0)
        link.linkTarget = Array("中文 文件.jpg".utf8)
        var hard = ManifestEntry(fileID: 5, kind: .hardlink, path: Array("photos/same.jpg".utf8), mode: 0o644, size: 0, mtimeSeconds: 1, mtimeNanoseconds: 0)
        hard.linkTo = 2
        let entries = [
            ManifestEntry(fileID: 1, kind: .directory, path: Array("photos".utf8), mode: 0o755, size: 0, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0),
            ManifestEntry(fileID: 2, kind: .file, path: Array("photos/中文 文件.jpg".utf8), mode: 0o644, size: 4_000_000, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 5,
                          flags: [.sparse, .linkSource]),
            link, hard,
            ManifestEntry(fileID: 6, kind: .stdin, path: Array("stdin.tar".utf8), mode: 0o600, size: ManifestEntry.unknownSize, mtimeSeconds: 0, mtimeNanoseconds: 0),
        ]
        let frames: [(String, Frame)] = [
            ("hello", .hello(Hello(role: .sender, features: [.xxh3, .auth]))),
            ("push-info", .pushInfo(PushInfo(flags: [.sync, .checksum], entries: 6, bytes: 4_000_000))),
            ("batch", .batch(Batch(batchID: 1, entries: entries))),
            ("totals", .totals(Totals(entries: 6, bytes: 4_000_000))),
            ("answer", .answer(BatchAnswer(batchID: 1, items: [
                BatchAnswer.Item(fileID: 2, offer: .prefix(bytes: 1 << 20, digest: Digest128(high: 1, low: 2))),
                BatchAnswer.Item(fileID: 3, offer: .chunks(chunkSize: 1 << 20, digests: [Digest128(high: 7, low: 8)])),
            ]))),
            ("plan", .plan(BatchPlan(batchID: 1, items: [
                BatchPlan.Item(fileID: 2, decision: .resumeAfter(1 << 20)),
                BatchPlan.Item(fileID: 3, decision: .patch(reuse: [true, false, true])),
            ]))),
            ("data", .data(DataHeader(fileID: 2, length: 1 << 20, offset: 0))),
            ("hole", .hole(Hole(fileID: 2, offset: 1 << 20, length: 1 << 30))),
            ("file-end", .fileEnd(FileEnd(fileID: 2, size: 4_000_000, digest: Digest128(high: 3, low: 4)))),
            ("batch-ack", .batchAck(BatchAck(batchID: 1, results: [BatchAck.Result(fileID: 2, status: .committed, digest: Digest128(high: 3, low: 4))]))),
            ("end", .end),
            ("done", .done(Done(files: 2, bytes: 4_000_000, skippedFiles: 1, symlinks: 1, hardLinks: 1))),
            ("error", .error(ErrorFrame(.refused, "refusing path '../x'"))),
            ("auth", .auth(AuthProof(mac: Array(0..<32)))),
            ("small-files", .smallFiles(SmallFiles(files: [
                SmallFiles.File(fileID: 4, digest: Digest128(high: 5, low: 6), bytes: Array("tiny file\n".utf8)),
                SmallFiles.File(fileID: 5, digest: nil, bytes: []),
            ]))),
            ("relay", .relay(Relay(hops: ["198.18.0.3:7878", "[fe80::1%eth0]:7878", "host-b.lan:7878"]))),
            ("report", .report(HopReport(outcomes: [
                HopReport.Outcome(host: "198.18.0.3:7878", ok: true, files: 3, bytes: 4_000_000),
                HopReport.Outcome(host: "198.18.0.4:7878", ok: false, message: "connection refused"),
            ]))),
        ]
        for (name, f) in frames { seeds.append(("frame-" + name, FrameCodec.encode(f))) }
        seeds.append(("stream-session", frames.flatMap { FrameCodec.encode($0.1) }))
        seeds.append(("data-with-payload", FrameCodec.encode(.data(DataHeader(fileID: 1, length: 5, offset: 0))) + Array("hello".utf8)))
        for (name, text) in [("path-traversal", "a/../../etc/passwd"), ("path-ok", "dir/sub/file.txt"),
                             ("ansi", "\u{1B}[2J\u{1B}]0;title\u{07}evil"), ("utf8", "你好, ft 👋\nsecond line\r\n"),
                             ("sensitive", ".ssh/authorized_keys")] {
            seeds.append(("text-" + name, Array(text.utf8)))
        }
        seeds.append(("invalid-utf8", [0x61, 0xC0, 0xAF, 0xFF, 0xED, 0xA0, 0x80, 0x0A]))
        for (name, bytes) in seeds {
            let fd = open(dir + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        print("wrote \(seeds.count) seeds to \(dir)")
    }
}

#if canImport(Glibc)
import Glibc
#endif
