import Foundation
import Testing
import FTWire
import CXXHash

package struct TempDir {
    package let path: String

    package init(_ tag: String = "ft") {
        var template = Array("/tmp/\(tag)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("mkdtemp failed") }
        path = String(cString: p)
    }

    @discardableResult
    package func sub(_ name: String) -> String {
        let p = path + "/" + name
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    package func cleanup() { try? FileManager.default.removeItem(atPath: path) }

    /// `src/data.bin` of `count` pattern bytes: its path and its bytes.
    package func sourceFile(_ count: Int, seed: UInt64) -> (path: String, bytes: [UInt8]) {
        let bytes = patternBytes(count, seed: seed)
        let path = sub("src") + "/data.bin"
        writeFile(path, bytes)
        return (path, bytes)
    }
}

package func patternBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        var v = x
        for _ in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
            i += 1
        }
    }
    return out
}

package func writeFile(_ path: String, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

package func readFile(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

/// Every path under `dir`, relative, sorted (hidden files included).
package func listTree(_ dir: String) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
    return (e.allObjects as! [String]).sorted()
}


/// Byte equality without handing megabytes to the test library, which
/// would print and diff them: reports sizes and the first difference.
package func expectSame(_ a: [UInt8]?, _ b: [UInt8]?, _ what: String = "bytes", sourceLocation: SourceLocation = #_sourceLocation) {
    guard a != b else { return }
    guard let a, let b else {
        Issue.record("\(what): one side is missing (\(a?.count ?? -1) vs \(b?.count ?? -1) bytes)", sourceLocation: sourceLocation)
        return
    }
    let first = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
    Issue.record("\(what): \(a.count) vs \(b.count) bytes, first difference at byte \(first)", sourceLocation: sourceLocation)
}

/// xxh3-128 of a file, computed independently of ft (plain reads).
package func hashFile(_ path: String) -> String {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    let state = XXH3_createState()!
    defer { XXH3_freeState(state) }
    XXH3_128bits_reset(state)
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        _ = buf.withUnsafeBytes { XXH3_128bits_update(state, $0.baseAddress, n) }
    }
    let h = XXH3_128bits_digest(state)
    return Digest128(high: h.high64, low: h.low64).hex
}

@Suite struct StdoutSpliceTests {
    @Test func unverifiedStdoutIsSpliced() throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let src = tmp.path + "/f"
        let bytes = patternBytes(5 * (1 << 20) + 3, seed: 6)
        writeFile(src, bytes)
        let recv = try FTReceiver(dir: tmp.path, extra: ["--stdout"])
        let send = try run(ftPath, ["send", recv.address, src, "-q", "--no-verify"])
        #expect(send.status == 0, "\(send.stderr)")
        let got = recv.child.wait()
        #expect(got.status == 0)
        expectSame(got.stdoutBytes, bytes, "stdout")
        #expect(got.stderr.contains("\"data_path\":\"splice\""), "\(got.stderr)")
        #expect(got.stderr.contains("\"verified\":false"))
    }
}

/// xxh3-128 of a file's logical content, reading only its data extents
/// (SEEK_DATA/SEEK_HOLE) and hashing holes as zeros from memory: the same
/// digest as `hashFile`, without reading gigabytes of holes from disk.
package func hashSparseFile(_ path: String) -> String {
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    var st = stat()
    fstat(fd, &st)
    let size = off_t(st.st_size)
    let state = XXH3_createState()!
    defer { XXH3_freeState(state) }
    XXH3_128bits_reset(state)
    let zeros = [UInt8](repeating: 0, count: 1 << 20)
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    func zero(_ n: off_t) {
        var left = Int(n)
        while left > 0 {
            let k = min(left, zeros.count)
            _ = zeros.withUnsafeBytes { XXH3_128bits_update(state, $0.baseAddress, k) }
            left -= k
        }
    }
    var at: off_t = 0
    while at < size {
        let data = lseek(fd, at, 3 /* SEEK_DATA, which Glibc's module lacks */)
        if data < 0 { break }
        zero(data - at)
        let hole = lseek(fd, data, 4 /* SEEK_HOLE */)
        var off = data
        while off < hole {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Swift.min($0.count, Int(hole - off)), off) }
            if n <= 0 { break }
            _ = buf.withUnsafeBytes { XXH3_128bits_update(state, $0.baseAddress, n) }
            off += off_t(n)
        }
        at = hole
    }
    zero(size - at)
    let h = XXH3_128bits_digest(state)
    return Digest128(high: h.high64, low: h.low64).hex
}

/// A file in `dir` holding the test code, with `mode`, for --code-file.
package func writeCodeFile(in dir: String, mode: mode_t = 0o600) -> String {
    let file = dir + "/code"
    writeFile(file, Array("\(testCode)\n".utf8))
    chmod(file, mode)
    return file
}
