import FTEngine
import FTTransfer
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// Turns library progress events into what a person or a tool reads:
/// a live bar on a terminal, a line every few seconds elsewhere, or NDJSON.
///
/// Unchecked Sendable: a push (or a receiver) calls `handle` from its own
/// thread, one event at a time; the command reads the renderer again only
/// after that push returned.
package final class ProgressRenderer: @unchecked Sendable {
    package enum Mode: Sendable {
        case bar
        case lines
        case json
        case quiet
    }

    package let mode: Mode
    let program: String
    let human: Console
    let json: Console
    let verb: String
    /// Progress lines (not on a terminal) come one interval after the
    /// push started, then every interval: a push shorter than that prints
    /// only its start and end, not a line of its first few kilobytes.
    private var lastLine = monotonicNanoseconds()
    private var lastBar: UInt64 = 0
    static let lineInterval: UInt64 = 5_000_000_000
    static let barInterval: UInt64 = 100_000_000

    /// `verb` reads "sent" or "received" in summaries.
    package init(program: String, verb: String, json: Bool, quiet: Bool, human: Console = .stderr, jsonTo: Console = .stdout) {
        self.program = program
        self.verb = verb
        self.human = human
        self.json = jsonTo
        if json {
            mode = .json
        } else if quiet {
            mode = .quiet
        } else {
            mode = human.isTTY ? .bar : .lines
        }
        if mode == .json { queue = EventQueue(self) }
    }

    /// A `.failed` event was shown: the command need not say it again.
    package var reportedFailure: Bool {
        queue?.drain()
        return failureShown
    }

    /// The first push that failed, for the exit status.
    package var firstFailure: FTError? {
        queue?.drain()
        return failure
    }

    private var failureShown = false
    private var failure: FTError?
    /// JSON events are written on a thread of their own (`EventQueue`).
    private var queue: EventQueue?

    /// Writes what is queued; before the command prints anything itself.
    package func flush() { queue?.drain() }

    /// From the push's thread. JSON events only queue there; the others
    /// are drawn at once (a bar line a tenth of a second at most).
    package func handle(_ event: ProgressEvent) {
        if let queue { queue.post(event) } else { render(event) }
    }

    func render(_ event: ProgressEvent) {
        record(event)
        switch mode {
        case .json: json.line(event.jsonLine)
        // The message names the peer where it matters, as in the other modes.
        case .quiet: if case .failed(let f) = event { say(f.message) }
        case .bar, .lines: human(event)
        }
    }

    /// `event`'s JSON line, newline included, at the end of `out`; for the
    /// queue's writer, which writes many lines at once.
    func appendJSON(_ event: ProgressEvent, to out: inout [UInt8]) {
        record(event)
        out.append(contentsOf: event.jsonLine.utf8)
        out.append(0x0A)
    }

    /// The first failure shown, for the exit status.
    private func record(_ event: ProgressEvent) {
        if case .failed(let f) = event {
            failureShown = true
            if failure == nil { failure = f.error }
        }
    }

    /// On stderr in every mode, JSON too: stdout holds only events.
    package func warn(_ s: String) { say("warning: " + s) }

    func say(_ s: String) {
        ProgressLine.shared.clear(human)
        human.line("\(program): \(s)")
    }

    private func human(_ event: ProgressEvent) {
        switch event {
        case .started(let s):
            lastLine = monotonicNanoseconds()
            let total = s.totalBytes.map { Sizes.format($0) } ?? "a stream of unknown length"
            let dirs = s.directories > 0 ? " and " + plural(s.directories, "directory", "directories") : ""
            let dir = verb == "sent" ? "to" : "from"
            // A receiver learns a count of entries, files and directories together.
            let count = verb == "sent" ? plural(s.files, "file") : plural(s.files, "entry", "entries")
            say("\(verb == "sent" ? "sending" : "receiving") \(count)\(dirs), \(total), \(dir) \(s.peer)")
        case .progress(let p):
            let now = monotonicNanoseconds()
            if mode == .bar {
                guard now - lastBar >= Self.barInterval else { return }
                lastBar = now
                ProgressLine.shared.draw(bar(p), human)
            } else {
                guard now - lastLine >= Self.lineInterval else { return }
                lastLine = now
                human.line("\(program): " + lineText(p))
            }
        case .fileDone:
            break
        case .finished(let s):
            let rate = s.seconds > 0 ? Double(s.bytes) / s.seconds : 0
            var check = s.verified ? ", verified (xxh3-128)" : ", NOT verified (--no-verify)"
            for c in Cipher.allCases where s.engine.dataPath.hasSuffix("(encrypted, \(c))") { check += ", sealed with \(c)" }
            let skipped = s.skippedBytes > 0 ? ", \(Sizes.format(s.skippedBytes)) already there" : ""
            let dir = verb == "sent" ? "to" : "from"
            if s.tally.dryRun {
                // Only the sender knows what it would have sent.
                say(verb == "sent" ? "dry run: would send \(plural(s.files, "file")) (\(Sizes.format(s.bytes))) to \(s.peer); nothing was written"
                                   : "dry run from \(s.peer): nothing was written")
                if let extra = Self.tallyLine(s.tally) { say(extra) }
                return
            }
            say("\(verb) \(plural(s.files, "file")) (\(Sizes.format(s.bytes))) \(dir) \(s.peer) in \(Sizes.fixed(s.seconds, 2)) s, \(Sizes.rate(rate))\(skipped)\(check)")
            if let extra = Self.tallyLine(s.tally) { say(extra) }
        case .failed(let f):
            say("\(f.message)")
        }
    }

    /// What happened beyond "sent", in one line; nil when nothing did.
    static func tallyLine(_ t: ProgressEvent.Tally) -> String? {
        var parts: [String] = []
        if t.identicalFiles > 0 { parts.append("\(plural(Int(t.identicalFiles), "file")) already there, identical") }
        let would = t.dryRun ? "to be " : ""
        if t.patchedFiles > 0 { parts.append("\(plural(Int(t.patchedFiles), "file")) \(would)patched") }
        if t.deleted > 0 { parts.append("\(plural(Int(t.deleted), "entry", "entries")) \(would)deleted") }
        if t.symlinks > 0 { parts.append("\(plural(Int(t.symlinks), "symlink")) made") }
        if t.hardLinks > 0 { parts.append("\(plural(Int(t.hardLinks), "hard link")) made") }
        if t.holeBytes > 0 { parts.append("\(Sizes.format(t.holeBytes)) of holes not sent") }
        for kind in t.skipped.keys.sorted() {
            let one: String, many: String?
            switch kind {
            case "symlink": (one, many) = ("symlink", nil)
            case "special": (one, many) = ("special file", nil)
            case "unreadable": (one, many) = ("unreadable entry", "unreadable entries")
            case "name": (one, many) = ("unsendable name", nil)
            case "excluded":
                parts.append("\(plural(t.skipped[kind]!, "entry", "entries")) excluded")
                continue
            default: (one, many) = (kind, nil)
            }
            parts.append("\(plural(t.skipped[kind]!, one, many)) skipped")
        }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }

    /// A remark outside the event stream: a line for people, or an object.
    package func note(_ text: String, json event: some EventBody) {
        queue?.drain()
        switch mode {
        case .json: json.line(event.line)
        case .quiet: break
        case .bar, .lines: say(text)
        }
    }

    /// The end of a chain push: one line per host (messages from other
    /// hosts are escaped like any peer text).
    package func hosts(_ outcomes: [HostOutcome], verified: Bool) {
        queue?.drain()
        if mode == .json {
            json.line(HostsEvent(hosts: outcomes.map {
                .init(host: $0.host, ok: $0.ok, files: $0.files, bytes: $0.bytes, pass: $0.pass, message: $0.message)
            }).line)
            return
        }
        let failed = outcomes.filter { !$0.ok }.count
        if mode == .quiet, failed == 0 { return }
        say("chain of \(plural(outcomes.count, "host")): \(outcomes.count - failed) ok" + (failed > 0 ? ", \(failed) failed" : ""))
        let width = outcomes.map(\.host.count).max() ?? 0
        for o in outcomes where mode != .quiet || !o.ok {
            let what = o.ok ? "ok      \(plural(Int(o.files), "file")), \(Sizes.format(o.bytes))" + (verified ? ", verified there" : ", NOT verified (--no-verify)")
                            : "FAILED  \(Escape.forDisplay(o.message))"
            let pass = o.pass > 1 ? " (pass \(o.pass))" : ""
            human.line("  \(o.host.rightPad(width))  \(what)\(pass)")
        }
    }

    func lineText(_ p: ProgressEvent.Snapshot) -> String {
        var s = Sizes.format(p.bytes)
        if let t = p.totalBytes, t > 0 {
            s += " of \(Sizes.format(t)) (\(Int(Double(p.bytes) * 100 / Double(t)))%)"
        }
        s += " at \(Sizes.rate(p.rate))"
        if let eta = p.eta { s += ", ETA \(Sizes.duration(eta))" }
        return s
    }

    func bar(_ p: ProgressEvent.Snapshot) -> String { Self.bar(p, columns: human.width) }

    /// One line of `columns - 1` terminal columns (the last stays free so
    /// the terminal never wraps), as pv shows it: name, bar, bytes done of
    /// the total, percent, rate, elapsed time, ETA. On a narrow terminal
    /// the bar goes first, then the ETA, then the byte counts, so the name
    /// stays readable. Widths are display columns: CJK and emoji take two.
    static func bar(_ p: ProgressEvent.Snapshot, columns: Int) -> String {
        let width = max(24, columns - 1)
        let fraction = p.totalBytes.flatMap { $0 > 0 ? min(1, Double(p.bytes) / Double($0)) : nil }
        let pct = fraction.map { " " + Sizes.fixed($0 * 100, 0).leftPad(3) + "%" } ?? ""
        let rate = " " + Sizes.rate(p.rate).leftPad(11)
        var sizes = "  " + Sizes.format(p.bytes) + (p.totalBytes.map { "/" + Sizes.format($0) } ?? "")
        let elapsed = "  " + Sizes.duration(p.elapsed)
        var eta = "  ETA \(p.eta.map { Sizes.duration($0) } ?? "--:--")"
        let barWidth = max(10, min(30, width / 5))
        var barText = " ["
        if let f = fraction {
            let full = Int(f * Double(barWidth))
            barText += String(repeating: "#", count: full) + String(repeating: "-", count: barWidth - full)
        } else {
            let pos = Int(p.elapsed * 8) % barWidth
            barText += String(repeating: "-", count: pos) + "#" + String(repeating: "-", count: barWidth - pos - 1)
        }
        barText += "]"
        let minName = 16
        func used() -> Int { barText.count + sizes.count + pct.count + rate.count + elapsed.count + eta.count }
        if width - used() < minName { barText = "" }
        if width - used() < minName { eta = "" }
        if width - used() < minName { sizes = "" }
        let nameRoom = max(1, width - used())
        return p.path.truncatedMiddle(columns: nameRoom).padded(columns: nameRoom) + barText + sizes + pct + rate + elapsed + eta
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
    func rightPad(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }

    /// Columns this takes on a terminal: East Asian wide and fullwidth
    /// characters and emoji take two, combining marks none.
    var displayWidth: Int { reduce(0) { $0 + $1.displayWidth } }

    /// Pads with spaces to `n` columns.
    func padded(columns n: Int) -> String {
        let w = displayWidth
        return w >= n ? self : self + String(repeating: " ", count: n - w)
    }

    /// Shortens to at most `n` columns by cutting the middle, keeping more
    /// of the end (the file's name): "dir/…/file.txt".
    func truncatedMiddle(columns n: Int) -> String {
        guard displayWidth > n, n > 3 else { return self }
        let room = n - 1
        var head = "", tail = ""
        var headRoom = room / 3, tailRoom = room - room / 3
        for c in self {
            guard c.displayWidth <= headRoom else { break }
            head.append(c)
            headRoom -= c.displayWidth
        }
        for c in reversed() {
            guard c.displayWidth <= tailRoom else { break }
            tail.insert(c, at: tail.startIndex)
            tailRoom -= c.displayWidth
        }
        return head + "…" + tail
    }
}

/// "1 file", "3 files".
func plural(_ n: Int, _ one: String, _ many: String? = nil) -> String {
    "\(n) " + (n == 1 ? one : (many ?? one + "s"))
}

extension Character {
    /// 2 for East Asian wide/fullwidth and emoji, 0 for a lone combining
    /// mark, else 1 (the common ranges; no table of every code point).
    var displayWidth: Int {
        guard let v = unicodeScalars.first?.value else { return 0 }
        if unicodeScalars.first!.properties.generalCategory == .nonspacingMark { return 0 }
        let wide: [ClosedRange<UInt32>] = [
            0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
            0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6,
            0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x1FA70...0x1FAFF, 0x20000...0x3FFFD,
        ]
        return wide.contains { $0.contains(v) } ? 2 : 1
    }
}
