import Foundation
import Testing
@testable import FTFrontEnd
import FTEngine
@testable import FTTransfer
import FTWire

/// ft's encoder against Foundation's decoder: what ft writes must read back
/// into the same Codable types with `JSONDecoder`.
@Suite struct JSONLineEncoderTests {
    struct Inner: Codable, Equatable {
        var name: String
        var sizes: [UInt64]
        var ratio: Double?
    }

    struct Sample: Codable, Equatable {
        var text: String
        var flag: Bool
        var small: Int8
        var big: UInt64
        var negative: Int64
        var optionalPresent: UInt32?
        var optionalAbsent: String?
        var nested: Inner
        var list: [Inner]
        var empty: [String]
    }

    let sample = Sample(
        text: "quote \" backslash \\ newline \n tab \t bell \u{07} esc \u{1B}[2J 你好 👋 \u{85}", flag: true, small: -8,
        big: .max, negative: .min, optionalPresent: 7, optionalAbsent: nil,
        nested: .init(name: "n", sizes: [0, 1, 1 << 40], ratio: 0.125), list: [.init(name: "a", sizes: [], ratio: nil)], empty: [])

    @Test func roundTripsThroughFoundationsDecoder() throws {
        let text = try JSONLineEncoder().encode(sample)
        #expect(!text.contains("\n"), "NDJSON: one line")
        #expect(try JSONDecoder().decode(Sample.self, from: Data(text.utf8)) == sample)
    }

    @Test func keepsDeclarationOrderAndWritesNullForAbsentOptionals() throws {
        let text = try JSONLineEncoder().encode(sample)
        let keys = ["text", "flag", "small", "big", "negative", "optionalPresent", "optionalAbsent", "nested", "list", "empty"]
        let positions = keys.map { text.range(of: "\"\($0)\":")!.lowerBound }
        #expect(positions == positions.sorted(), "keys in declaration order: \(text)")
        #expect(text.contains("\"optionalAbsent\":null") && text.contains("\"ratio\":null"))
        // Foundation's encoder leaves absent optionals out; otherwise the two agree.
        let ours = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        var theirs = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(sample)) as? [String: Any])
        theirs["optionalAbsent"] = NSNull()
        theirs["list"] = (theirs["list"] as? [[String: Any]])?.map { var m = $0; m["ratio"] = NSNull(); return m }
        func canonical(_ o: [String: Any]) throws -> String {
            String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
        }
        #expect(try canonical(ours) == canonical(theirs))
    }

    @Test func doublesKeepThreeDecimalsAndNonFiniteIsNull() throws {
        struct D: Codable { var a: Double; var b: Double; var c: Double; var d: Float }
        let text = try JSONLineEncoder().encode(D(a: 1.23456, b: .infinity, c: 3, d: 0.5))
        #expect(text == #"{"a":1.235,"b":null,"c":3,"d":0.5}"#)
    }

    /// Written as it goes: nested containers by hand, arrays of arrays, an
    /// encoder asked twice for its object, a value with no fields, top-level
    /// scalars and arrays.
    @Test func nestedContainersAndBareValuesComeOutWhole() throws {
        struct Hand: Encodable {
            enum K: String, CodingKey { case a, inner, list, after }
            enum I: String, CodingKey { case x, y }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: K.self)
                try c.encode(1, forKey: .a)
                var inner = c.nestedContainer(keyedBy: I.self, forKey: .inner)
                try inner.encode("x", forKey: .x)
                try inner.encodeNil(forKey: .y)
                var list = c.nestedUnkeyedContainer(forKey: .list)
                try list.encode([1, 2])
                var deeper = list.nestedUnkeyedContainer()
                try deeper.encode(3)
                try list.encode([String]())
                try c.encode(true, forKey: .after)
                // The same encoder again: more fields of the same object.
                var again = encoder.container(keyedBy: I.self)
                try again.encode(2.5, forKey: .y)
            }
        }
        struct Nothing: Encodable { func encode(to encoder: any Encoder) throws {} }
        struct Holder: Encodable { var n = Nothing(); var z: UInt8 = 255; var m: Int16 = -2 }
        let e = JSONLineEncoder()
        #expect(try e.encode(Hand()) == #"{"a":1,"inner":{"x":"x","y":null},"list":[[1,2],[3],[]],"after":true,"y":2.5}"#)
        #expect(try e.encode(Holder()) == #"{"n":{},"z":255,"m":-2}"#)
        #expect(try e.encode("a\"b") == #""a\"b""#)
        #expect(try e.encode([[Int]]()) == "[]")
        #expect(try e.encode([Optional<Int>.none, 1]) == "[null,1]")
    }

    @Test func orderedFieldsKeepTheirOrder() throws {
        let f = OrderedFields<Int>([("zeta", 1), ("alpha", 2), ("mid/dle", 3)])
        let text = try JSONLineEncoder().encode(f)
        #expect(text == #"{"zeta":1,"alpha":2,"mid/dle":3}"#)
        let back = try JSONDecoder().decode(OrderedFields<Int>.self, from: Data(text.utf8))
        #expect(back["zeta"] == 1 && back["mid/dle"] == 3 && back.pairs.count == 3)
    }
}

@Suite struct PushEventTests {
    let digest = Digest128(high: 1, low: 2)

    func decode<Body: EventBody>(_ type: Body.Type, _ line: String) throws -> Body {
        try JSONDecoder().decode(EventLine<Body>.self, from: Data(line.utf8)).body
    }

    @Test func eachEventReadsBackAsItsType() throws {
        let started = ProgressEvent.started(.init(session: "s1", peer: "p", files: 2, directories: 1, totalBytes: nil, skippedBytes: 3))
        let s = try decode(StartEvent.self, started.jsonLine)
        #expect(s.session == "s1" && s.files == 2 && s.totalBytes == nil && s.bytesSkipped == 3)

        let snapshot = ProgressEvent.progress(.init(session: "s1", path: "a/b", fileBytes: 5, fileSize: nil, bytes: 9, totalBytes: 20,
                                                    rate: 1.5, elapsed: 2))
        let p = try decode(ProgressLineEvent.self, snapshot.jsonLine)
        #expect(p.file == "a/b" && p.fileBytes == 5 && p.fileSize == nil && p.totalBytes == 20 && p.rateBytesPerSecond == 1.5)

        let f = try decode(FileDoneEvent.self, ProgressEvent.fileDone(.init(session: "s1", path: "a/b", bytes: 2, digest: digest)).jsonLine)
        #expect(f.xxh3_128 == digest.hex)

        var stats = EngineStats()
        stats.completed[OpKind.send.rawValue] = 1
        stats.bytes[OpKind.send.rawValue] = 100
        var summary = ProgressEvent.Summary(session: "s1", peer: "p", files: 1, directories: 0, bytes: 2, skippedBytes: 0, seconds: 1,
                                            verified: true, digests: [("z", digest), ("a", digest)],
                                            engine: EngineReport(backend: .ioUring, dataPath: "copy", stats: stats))
        summary.tally.skipped = ["unreadable": 2, "special": 1]
        let doneLine = ProgressEvent.finished(summary).jsonLine
        let d = try decode(DoneEvent.self, doneLine)
        #expect(d.bytesSent == 2 && d.verified && d.engine.dataPath == "copy" && d.engine.operations["send"]?.bytes == 100)
        #expect(d.skipped["unreadable"] == 2)
        #expect(doneLine.contains(#""skipped":{"special":1,"unreadable":2}"#), "reasons sorted: \(doneLine)")
        #expect(doneLine.contains(#""hashes":{"z":"\#(digest.hex)","a":"\#(digest.hex)"}"#), "hashes in the push's order")

        let error = FTError(.io(IOError(.connectionRefused, "connect to", "p")))
        let e = try decode(ErrorEvent.self, ProgressEvent.failed(.init(session: "s1", peer: "p", error: error)).jsonLine)
        #expect(e.kind == "system" && e.errno == ECONNREFUSED && e.path == "p" && e.refusal == nil && e.session == "s1")
    }

    /// The file-done line is written by hand (one per file); it must be
    /// the Codable line exactly, for names that need escaping too.
    @Test func theDirectFileDoneLineIsTheCodableOne() throws {
        let digests: [Digest128?] = [nil, .zero, Digest128(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210), Digest128(high: .max, low: 1)]
        let paths = ["a/b", "", "with \"quotes\" and \\", "tab\there\nnewline", "ünïcödé/日本/😀", "\u{7f}\u{1}\u{9f}", String(repeating: "long/", count: 200)]
        for path in paths {
            for digest in digests {
                let e = FileDoneEvent(session: "s\(path.count)", path: path, bytes: UInt64(path.utf8.count) << 33, xxh3_128: digest?.hex)
                #expect(e.directLine == e.line, "\(path.debugDescription)")
                let back = try decode(FileDoneEvent.self, e.directLine)
                #expect(back.path == path && back.xxh3_128 == digest?.hex && back.bytes == e.bytes)
            }
        }
    }

    /// 32 lowercase digits, high half first, zeros kept.
    @Test func aDigestIsWrittenAsXxh128sumWritesIt() {
        #expect(Digest128.zero.hex == String(repeating: "0", count: 32))
        #expect(Digest128(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210).hex == "0123456789abcdeffedcba9876543210")
        #expect(Digest128(high: 1, low: .max).hex == "0000000000000001ffffffffffffffff")
        for _ in 0..<100 {
            let d = Digest128(high: .random(in: 0 ... .max), low: .random(in: 0 ... .max))
            let pad = { (v: UInt64) in String(repeating: "0", count: 16 - String(v, radix: 16).count) + String(v, radix: 16) }
            #expect(d.hex == pad(d.high) + pad(d.low))
        }
    }

    @Test func aLineOfAnotherKindIsNotReadAsThisOne() throws {
        let line = ProgressEvent.fileDone(.init(session: "s", path: "f", bytes: 1, digest: nil)).jsonLine
        #expect(throws: DecodingError.self) { try decode(StartEvent.self, line) }
        #expect(throws: DecodingError.self) { try decode(FileDoneEvent.self, line.replacingOccurrences(of: #""v":1"#, with: #""v":2"#)) }
    }

    @Test func anErrorBeforeAnyPushHasEveryFieldAndOnlyAMessage() throws {
        let line = ErrorEvent(message: "--limit '3x' is not a rate").line
        let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(Set(o.keys) == ["event", "v", "session", "peer", "message", "kind", "errno", "path", "refusal"])
        #expect(o["message"] as? String == "--limit '3x' is not a rate" && o["session"] is NSNull && o["kind"] is NSNull)
    }

    @Test func chainEventsReadBack() throws {
        let pass = try decode(PassEvent.self, PassEvent(pass: 2, chain: ["b", "c"]).line)
        #expect(pass.pass == 2 && pass.chain == ["b", "c"])
        let hosts = HostsEvent(hosts: [.init(host: "a:1", ok: false, files: 0, bytes: 0, pass: 1, message: "down")])
        #expect(try decode(HostsEvent.self, hosts.line).hosts.first?.message == "down")
    }
}
