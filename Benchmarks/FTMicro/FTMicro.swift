import Benchmark
import FTEngine
import FTTransfer
import FTWire
import Glibc
import Logging

let benchmarks: @Sendable () -> Void = {
    // 1000 operations per sample, so the harness's own per-sample cost
    // (it reads /proc for some metrics) does not swamp sub-microsecond work.
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .mallocCountTotal, .throughput],
                                           scalingFactor: .kilo, maxDuration: .seconds(2))

    // MARK: wire

    Benchmark("wire: encode a data header in place") { benchmark in
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: DataHeader.wireSize, alignment: 8)
        defer { out.deallocate() }
        for i in benchmark.scaledIterations {
            DataHeader(fileID: UInt32(truncatingIfNeeded: i), length: 1 << 20, offset: UInt64(i) << 20).encode(into: out)
            blackHole(out[10])
        }
    }

    let dataFrame = FrameCodec.encode(.data(DataHeader(fileID: 7, length: 1 << 20, offset: 1 << 30)))
    Benchmark("wire: decode a data header") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? FrameCodec.decode(dataFrame))
        }
    }

    let manifest = FrameCodec.encode(.manifest((0..<100).map {
        ManifestEntry(fileID: UInt32($0), kind: .file, path: Array("photos/2026/trip/IMG_\($0).jpg".utf8), mode: 0o644,
                      size: 4_000_000, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
    }))
    Benchmark("wire: decode a manifest frame of 100 entries") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? FrameCodec.decode(manifest))
        }
    }

    let path = Array("photos/2026/中文 目录/trip/IMG_1234.jpg".utf8)
    Benchmark("wire: validate one peer path") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? PeerPath.validate(path))
        }
    }

    // MARK: hashing

    let mib = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
    for i in 0..<mib.count { mib[i] = UInt8(truncatingIfNeeded: i &* 131) }
    Benchmark("xxh3-128: 1 MiB in cache (1024 iterations = 1 GiB)",
              configuration: .init(metrics: [.wallClock, .throughput], scalingFactor: .kilo)) { benchmark in
        let h = StreamHasher()
        for _ in benchmark.scaledIterations { h.update(UnsafeRawBufferPointer(mib)) }
        blackHole(h.digest())
    }

    // MARK: ring

    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    Benchmark("ring: submit and complete one NOP") { benchmark in
        let ring = try! URingBackend()
        for i in benchmark.scaledIterations {
            ring.queue(.nop, UserData(raw: UInt64(i)))
            try! ring.run(timeoutNanoseconds: nil) { blackHole($0.result) }
        }
    }

    Benchmark("ring: linked splice 64 KiB file → pipe → /dev/null") { benchmark in
        let ring = try! URingBackend()
        var template = Array("/tmp/ft-bench-XXXXXX".utf8CString)
        let file = mkstemp(&template)
        unlink(template)
        let block = [UInt8](repeating: 7, count: 65_536)
        _ = block.withUnsafeBytes { pwrite(file, $0.baseAddress, $0.count, 0) }
        let sink = open("/dev/null", O_WRONLY)
        let pipe = try! Pipe(size: 1 << 20)
        defer {
            close(file)
            close(sink)
        }
        for _ in benchmark.scaledIterations {
            ring.queue(.splice(input: file, inputOffset: 0, output: pipe.writeEnd, outputOffset: Op.noOffset, length: 65_536, flags: 0),
                       UserData(raw: 1), link: true)
            ring.queue(.splice(input: pipe.readEnd, inputOffset: Op.noOffset, output: sink, outputOffset: Op.noOffset, length: 65_536, flags: 0),
                       UserData(raw: 2))
            var done = 0
            while done < 2 { try! ring.run(timeoutNanoseconds: nil) { _ in done += 1 } }
        }
    }
}
