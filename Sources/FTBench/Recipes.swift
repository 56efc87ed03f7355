import FTEngine
import SystemPackage
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Where a transfer's bytes end up.
package enum Sink: Sendable, Equatable, CustomStringConvertible {
    /// Discarded after arriving (stdout to /dev/null, or a discarding peer).
    case null
    /// Written into this directory.
    case file(String)

    package var description: String {
        switch self {
        case .null: return "null"
        case .file: return "file"
        }
    }
}

/// Command lines for ft and for the peers (docs/BENCHMARKS.md).
package struct Recipes: Sendable {
    package var ft: String
    package var engine: EnginePreference

    package init(ft: String, engine: EnginePreference = .auto) {
        self.ft = ft
        self.engine = engine
    }

    /// One file with ft.
    package func ftFile(_ source: String, bytes: UInt64, sink: Sink, io: String = "auto", chunk: String? = nil,
                       verify: Bool = true, encrypt: Bool = false, cipher: String? = nil, streams: Int = 1,
                       target: String? = nil) -> TransferCommand {
        let port = Ports.free()
        var recv = [ft, "recv", "--listen", "127.0.0.1:\(port)", "--once", "-q", "--engine", engine.rawValue]
        var expect: (String, UInt64)?
        var cleanup: [String] = []
        switch sink {
        case .null:
            recv.append("--stdout")
        case .file(let dir):
            recv += ["--dir", dir, "--overwrite"]
            let out = dir + "/" + baseName(source)
            expect = (out, bytes)
            cleanup = [out]
        }
        var send = [ft, "send", target ?? "127.0.0.1:\(port)", source, "-q", "--io", io, "--engine", engine.rawValue]
        if let chunk { send += ["--chunk", chunk] }
        if !verify { send.append("--no-verify") }
        if encrypt { send.append("--encrypt") }
        if let cipher { send += ["--cipher", cipher] }
        if streams > 1 { send += ["-P", "\(streams)"] }
        var t = TransferCommand(label: "ft", receiver: recv, receiverPort: port, sender: send)
        t.expectFile = expect
        t.cleanup = cleanup
        return t
    }

    /// One file with socat -b 1M (the strongest plain-copy peer).
    package func socat(_ source: String, bytes: UInt64, sink: Sink) -> TransferCommand {
        let port = Ports.free()
        var t = TransferCommand(
            label: "socat -b 1M",
            receiver: ["socat", "-b", "1048576", "-u", "TCP-LISTEN:\(port),bind=127.0.0.1,reuseaddr", "STDOUT"],
            receiverPort: port,
            sender: ["socat", "-b", "1048576", "-u", "FILE:\(source)", "TCP:127.0.0.1:\(port)"])
        if case .file(let dir) = sink {
            t.receiverStdout = dir + "/socat.out"
            t.expectFile = (t.receiverStdout, bytes)
            t.cleanup = [t.receiverStdout]
        }
        return t
    }

    /// One file with netcat.
    package func nc(_ source: String, bytes: UInt64, sink: Sink) -> TransferCommand {
        let port = Ports.free()
        var t = TransferCommand(label: "nc", receiver: ["nc", "-l", "127.0.0.1", "\(port)"], receiverPort: port,
                                sender: ["nc", "-N", "127.0.0.1", "\(port)"])
        t.senderStdin = source
        if case .file(let dir) = sink {
            t.receiverStdout = dir + "/nc.out"
            t.expectFile = (t.receiverStdout, bytes)
            t.cleanup = [t.receiverStdout]
        }
        return t
    }

    /// iperf3 sending the file with sendfile; its server discards.
    package func iperf3File(_ source: String, bytes: UInt64) -> TransferCommand {
        let port = Ports.free()
        return TransferCommand(
            label: "iperf3 -F -Z", receiver: ["iperf3", "-s", "-1", "-p", "\(port)"], receiverPort: port,
            sender: ["iperf3", "-c", "127.0.0.1", "-p", "\(port)", "-F", source, "-Z", "-n", "\(bytes)"])
    }

    /// A tree of small files with ft.
    package func ftTree(_ source: String, into dir: String) -> TransferCommand {
        let port = Ports.free()
        var t = TransferCommand(
            label: "ft", receiver: [ft, "recv", "--listen", "127.0.0.1:\(port)", "--once", "-q", "--dir", dir,
                                    "--engine", engine.rawValue],
            receiverPort: port, sender: [ft, "send", "127.0.0.1:\(port)", source, "-q", "--engine", engine.rawValue])
        t.cleanup = [dir + "/" + baseName(source)]
        return t
    }

    /// A tree through `tar c | nc` → `nc | tar x`, keeping what ft keeps
    /// (symlinks and hard links by default, holes with --sparse).
    package func tarNC(_ source: String, into dir: String) -> TransferCommand {
        let port = Ports.free()
        let out = dir + "/tar-nc"
        var t = TransferCommand(
            label: "tar | nc", receiver: ["mkdir -p '\(out)' && nc -l 127.0.0.1 \(port) | tar x -C '\(out)'"],
            receiverPort: port, sender: ["tar c --sparse -C '\(source)' . | nc -N 127.0.0.1 \(port)"])
        t.receiverIsShell = true
        t.senderIsShell = true
        t.cleanup = [out]
        return t
    }

    /// A tree to an rsync daemon (no ssh) with -aHS, so it keeps what ft
    /// keeps; the module runs as root without chroot (docs/BENCHMARKS.md).
    package func rsyncDaemon(_ source: String, into dir: String, work: String) -> TransferCommand {
        let port = Ports.free()
        let out = dir + "/rsync"
        let conf = work + "/rsyncd-\(port).conf"
        let text = "uid = root\ngid = root\nuse chroot = no\npid file = \(work)/rsyncd-\(port).pid\n[mod]\npath = \(out)\nread only = no\n"
        writeText(conf, text)
        var t = TransferCommand(
            label: "rsync daemon",
            receiver: ["mkdir -p '\(out)' && exec rsync --daemon --no-detach --address 127.0.0.1 --port \(port) --config '\(conf)'"],
            receiverPort: port, sender: ["rsync", "-aHS", source + "/", "rsync://127.0.0.1:\(port)/mod/"])
        t.receiverIsShell = true
        t.receiverPersists = true
        t.cleanup = [out]
        return t
    }
}

func baseName(_ path: String) -> String {
    String(path.split(separator: "/").last ?? Substring(path))
}

func writeText(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}

/// Test data: incompressible bytes from a fast generator, warmed into the
/// page cache first (docs/BENCHMARKS.md).
package enum Fixtures {
    package static func file(_ path: String, bytes: UInt64) throws(IOError) {
        var st = stat()
        if stat(path, &st) == 0, UInt64(st.st_size) == bytes {
            warm(path)
            return
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IOError(Errno(rawValue: errno), "create", path) }
        defer { close(fd) }
        var buf = [UInt64](repeating: 0, count: 1 << 17)
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        var left = bytes
        while left > 0 {
            for i in buf.indices {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                buf[i] = x
            }
            let n = Int(min(left, UInt64(buf.count * 8)))
            let w = buf.withUnsafeBytes { write(fd, $0.baseAddress, n) }
            guard w == n else { throw IOError(Errno(rawValue: errno), "write", path) }
            left -= UInt64(n)
        }
        warm(path)
    }

    /// `count` files with sizes spread over `bytes`, 100 per directory up
    /// to 10,000 files and 1,000 per directory beyond.
    package static func tree(_ dir: String, count: Int, bytes: ClosedRange<Int>) throws(IOError) {
        let marker = dir + ".complete-\(count)-\(bytes.lowerBound)-\(bytes.upperBound)"
        if access(marker, F_OK) == 0 { return }
        removeTree(dir)
        mkdir(dir, 0o755)
        let perDirectory = count > 10_000 ? 1000 : 100
        var block = [UInt8](repeating: 0, count: bytes.upperBound)
        for i in 0..<count {
            let sub = dir + "/d\(i / perDirectory)"
            if i % perDirectory == 0 { mkdir(sub, 0o755) }
            let size = bytes.lowerBound + (i &* 2_654_435_761) % (bytes.count)
            for k in 0..<size { block[k] = UInt8(truncatingIfNeeded: i &* 31 &+ k &* 7) }
            let fd = open(sub + "/f\(i)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw IOError(Errno(rawValue: errno), "create", sub + "/f\(i)") }
            _ = block.withUnsafeBytes { write(fd, $0.baseAddress, size) }
            close(fd)
        }
        writeText(marker, "")
    }

    /// Writes back what is dirty, then drops the page cache, dentries and
    /// inodes (root only; validated before the run).
    package static func dropPageCache() {
        sync()
        let fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = write(fd, "3\n", 2)
        close(fd)
    }

    /// Reads every file of a tree once (into the page cache); returns the
    /// bytes of its regular files.
    package static func warmTree(_ dir: String) -> UInt64 {
        var total: UInt64 = 0
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        func walk(_ path: String) {
            guard let d = opendir(path) else { return }
            defer { closedir(d) }
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name != ".", name != ".." else { continue }
                let child = path + "/" + name
                var st = stat()
                guard lstat(child, &st) == 0 else { continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    walk(child)
                case S_IFREG:
                    total += UInt64(st.st_size)
                    let fd = open(child, O_RDONLY | O_CLOEXEC)
                    guard fd >= 0 else { continue }
                    while read(fd, &buf, buf.count) > 0 {}
                    close(fd)
                default:
                    break
                }
            }
        }
        walk(dir)
        return total
    }

    static func warm(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while read(fd, &buf, buf.count) > 0 {}
    }
}
