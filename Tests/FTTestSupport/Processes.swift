import Foundation
import Testing
import FTWire

/// The directory holding the built products (ft, ftbench), next to this
/// test bundle.
package let productsDirectory: String = {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // swift test may run .../debug/ftPackageTests.xctest as a directory bundle.
    if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    return dir.path
}()

/// The ft binary the tests run: the debug build, or FT_TEST_FT (a release
/// or packaged binary, for figures).
package let ftPath = ProcessInfo.processInfo.environment["FT_TEST_FT"] ?? productsDirectory + "/ft"

/// The one-time code every test receiver and sender uses by default.
package let testCode = "k7mq-2fxp-93rd"

package struct Finished {
    package var status: Int32
    package var stdoutBytes: [UInt8]
    package var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    package var stderr: String
    package var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
}

/// A child process with its output captured; killed if a test forgets it.
///
/// posix_spawn and waitpid directly: Foundation's Process on Linux leaves
/// its pipes inheritable (a later child then holds an earlier child's
/// stdout open, so EOF never comes) and was seen to miss a child's exit.
package final class Child: @unchecked Sendable {
    package let pid: pid_t
    package let executable: String
    package let arguments: [String]
    private var inputFD: CInt = -1
    private var outData: [UInt8] = []
    private var errData: [UInt8] = []
    private let lock = NSLock()
    private let outDone = DispatchSemaphore(value: 0)
    private let errDone = DispatchSemaphore(value: 0)
    private var status: Int32?
    package static let spawnLock = NSLock()

    /// `terminalColumns` puts stdin and stdout on a pseudo-terminal that
    /// wide (stderr stays a pipe): `write` then types keys, and stdout is
    /// what the terminal shows, escape sequences and all.
    package init(_ executable: String, _ args: [String], environment: [String: String] = [:], stdinFile: String? = nil,
                 terminalColumns: Int? = nil) throws {
        self.executable = executable
        self.arguments = args
        // pipe2 is not in the Glibc module: pipe + FD_CLOEXEC, under one
        // lock with the spawn so a sibling test's spawn cannot inherit them.
        Child.spawnLock.lock()
        defer { Child.spawnLock.unlock() }
        func pipePair() -> (CInt, CInt) {
            var fds: [CInt] = [-1, -1]
            precondition(pipe(&fds) == 0)
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return (fds[0], fds[1])
        }
        var (outR, outW) = pipePair()
        let (errR, errW) = pipePair()
        var inR: CInt
        if let terminalColumns {
            // posix_openpt and friends are not in the Glibc module; these are
            // what they do on Linux: TIOCSPTLCK unlocks, TIOCGPTN names the slave.
            let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
            var unlock: CInt = 0
            var number: CUnsignedInt = 0
            guard master >= 0, ioctl(master, 0x4004_5431, &unlock) == 0, ioctl(master, 0x8004_5430, &number) == 0 else {
                throw TestFailure("no pseudo-terminal: errno \(errno)")
            }
            let name = "/dev/pts/\(number)"
            var size = winsize(ws_row: 24, ws_col: UInt16(terminalColumns), ws_xpixel: 0, ws_ypixel: 0)
            _ = ioctl(master, UInt(TIOCSWINSZ), &size)
            close(outR)
            close(outW)
            inR = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)
            outW = dup(inR)
            _ = fcntl(outW, F_SETFD, FD_CLOEXEC)
            inputFD = dup(master)
            _ = fcntl(inputFD, F_SETFD, FD_CLOEXEC)
            outR = master
        } else if let stdinFile {
            inR = open(stdinFile, O_RDONLY | O_CLOEXEC)
        } else {
            let (r, w) = pipePair()
            inR = r
            inputFD = w
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, inR, 0)
        posix_spawn_file_actions_adddup2(&actions, outW, 1)
        posix_spawn_file_actions_adddup2(&actions, errW, 2)
        var attrs = posix_spawnattr_t()
        posix_spawnattr_init(&attrs)
        // Children start with no signals blocked, whatever this thread has.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attrs, &empty)
        posix_spawnattr_setflags(&attrs, Int16(POSIX_SPAWN_SETSIGMASK))
        var env = ProcessInfo.processInfo.environment
        // Every ft in the tests shares one code unless a test says otherwise;
        // the value "<unset>" removes a variable.
        env["FT_CODE"] = testCode
        for (k, v) in environment { env[k] = v == "<unset>" ? nil : v }
        let argv = ([executable] + args).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attrs)
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attrs, argv, envp)
        close(inR)
        close(outW)
        close(errW)
        guard rc == 0 else { throw TestFailure("spawn \(executable): errno \(rc)") }
        pid = child
        let stdoutFD = outR
        Thread { [self] in drain(stdoutFD, into: \.outData, done: outDone) }.start()
        Thread { [self] in drain(errR, into: \.errData, done: errDone) }.start()
    }

    private func drain(_ fd: CInt, into keyPath: ReferenceWritableKeyPath<Child, [UInt8]>, done: DispatchSemaphore) {
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            // A pseudo-terminal's master reads EIO once the child closed it.
            if n <= 0 { break }
            lock.withLock { self[keyPath: keyPath].append(contentsOf: buf[..<n]) }
        }
        close(fd)
        done.signal()
    }

    deinit {
        if poll() == nil {
            Foundation.kill(pid, SIGKILL)
            _ = wait(seconds: 5)
        }
        if inputFD >= 0 { close(inputFD) }
    }

    /// The exit status if the child has exited (reaping it), else nil.
    private func poll() -> Int32? {
        if let status { return status }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        guard r == pid else { return nil }
        // Exit code, or 128 + signal like a shell reports it.
        let signal = st & 0x7F
        status = signal == 0 ? (st >> 8) & 0xFF : 128 + signal
        return status
    }

    package var isRunning: Bool { poll() == nil }

    package func write(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.write(inputFD, $0.baseAddress! + off, $0.count - off) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return }
            off += n
        }
    }

    package func closeInput() {
        if inputFD >= 0 { close(inputFD) }
        inputFD = -1
    }

    package var stdoutSoFar: String { lock.withLock { String(decoding: outData, as: UTF8.self) } }
    package var stderrSoFar: String { lock.withLock { String(decoding: errData, as: UTF8.self) } }

    /// Waits until stdout or stderr holds `text`, up to `seconds`.
    package func waitForOutput(_ text: String, seconds: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if stdoutSoFar.contains(text) || stderrSoFar.contains(text) { return true }
            if !isRunning {
                usleep(50_000)
                return stdoutSoFar.contains(text) || stderrSoFar.contains(text)
            }
            usleep(10_000)
        }
        return false
    }

    /// Waits for exit (killing the child after `seconds`).
    package func wait(seconds: Double = 60) -> Finished {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning, Date() < deadline { usleep(10_000) }
        if isRunning {
            Issue.record("\(executable) \(arguments.joined(separator: " ")) did not exit within \(seconds) s")
            Foundation.kill(pid, SIGKILL)
            while isRunning { usleep(10_000) }
        }
        _ = outDone.wait(timeout: .now() + 5)
        _ = errDone.wait(timeout: .now() + 5)
        return Finished(status: status ?? -1, stdoutBytes: lock.withLock { outData }, stderr: stderrSoFar)
    }

    package func kill(_ signal: Int32 = SIGKILL) { Foundation.kill(pid, signal) }
}

/// Runs a command to completion.
package func run(_ executable: String, _ args: [String], environment: [String: String] = [:], stdinFile: String? = nil, seconds: Double = 120) throws -> Finished {
    try Child(executable, args, environment: environment, stdinFile: stdinFile).wait(seconds: seconds)
}

/// `ft recv --json` on a free loopback port; `port` comes from its ready event.
package final class FTReceiver {
    package let child: Child
    package let port: UInt16

    /// `wrapper`: a command that runs ft recv as its last arguments (and
    /// execs it, so that signals reach ft), e.g. in a namespace.
    package init(dir: String, extra: [String] = [], environment: [String: String] = [:], wrapper: [String] = []) throws {
        let command = wrapper + [ftPath, "recv", "--listen", "127.0.0.1:0", "--dir", dir, "--json"] + extra
        child = try Child(command[0], Array(command.dropFirst()), environment: environment)
        guard child.waitForOutput("\"event\":\"ready\"") else {
            let f = child.wait(seconds: 5)
            throw TestFailure("ft recv did not get ready: \(f.stderr) \(f.stdout)")
        }
        let all = child.stdoutSoFar + "\n" + child.stderrSoFar
        let line = all.split(separator: "\n").first { $0.contains("\"ready\"") }!
        let listen = line.components(separatedBy: "\"listen\":\"")[1].components(separatedBy: "\"")[0]
        port = UInt16(listen.split(separator: ":").last!)!
    }

    package var address: String { "127.0.0.1:\(port)" }

    /// A receiver a test did not stop (it failed early, or serves until
    /// interrupted) must not outlive the test run.
    deinit {
        if child.isRunning {
            child.kill(SIGKILL)
            _ = child.wait(seconds: 5)
        }
    }

    package func stop() -> Finished {
        child.kill(SIGINT)
        return child.wait(seconds: 20)
    }

    /// Parsed NDJSON events so far.
    package var events: [[String: Any]] {
        child.stdoutSoFar.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}

package struct TestFailure: Error, CustomStringConvertible {
    package var description: String
    package init(_ d: String) { description = d }
}


/// Starts a `--once` receiver into `dir` and a sender of `paths` paced at
/// `limit`, kills the sender with SIGKILL after a random pause in
/// `pauseMicroseconds`, and stops the receiver.
package func pushKilledMidway(into dir: String, _ paths: [String], limit: String,
                              pauseMicroseconds: ClosedRange<UInt32>) throws {
    let recv = try FTReceiver(dir: dir, extra: ["--once"])
    let sender = try Child(ftPath, ["send", recv.address] + paths + ["-q", "--limit", limit])
    usleep(UInt32.random(in: pauseMicroseconds))
    sender.kill(SIGKILL)
    _ = sender.wait()
    // A kill before the connection leaves the --once receiver waiting for
    // a push that never comes: stop it either way.
    _ = recv.child.waitForOutput("\"event\":\"error\"", seconds: 5)
    _ = recv.stop()
}

/// One push through the real binaries: a `--once` receiver into `dst`, a
/// sender of `paths`; both must succeed. Returns the sender's done event.
package func pushWithCLI(_ dst: String, _ paths: [String], recv extraRecv: [String] = [], send extraSend: [String] = [],
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    let recv = try FTReceiver(dir: dst, extra: ["--once"] + extraRecv)
    let send = try run(ftPath, ["send", recv.address] + paths + ["--json"] + extraSend)
    #expect(send.status == 0, "\(send.stderr)", sourceLocation: sourceLocation)
    #expect(recv.child.wait().status == 0, sourceLocation: sourceLocation)
    return try #require(doneEvent(send.stdout), "\(send.stdout)", sourceLocation: sourceLocation)
}

/// Raises this process's open-file limit to its hard limit; fails the test
/// (loudly, not skipped) if that is under `need`.
package func raiseOpenFiles(_ need: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
    var lim = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
    lim.rlim_cur = lim.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
    try #require(lim.rlim_cur >= need, "needs \(need) open files; the hard limit is \(lim.rlim_max)", sourceLocation: sourceLocation)
}

/// Runs `executable` as the user nobody (setpriv), for tests that play a
/// second local user; they need root and say so.
package func runAsNobody(_ executable: String, _ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Finished {
    try #require(geteuid() == 0, "plays another user with setpriv, which needs root", sourceLocation: sourceLocation)
    return try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", executable] + args)
}
