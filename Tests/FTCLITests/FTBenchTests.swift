import Foundation
import Testing
import FTTestSupport
import FTBench
#if canImport(FoundationXML)
import FoundationXML
#endif

let ftbenchPath = productsDirectory + "/ftbench"

/// Checks the parts of schema v1 (docs/ftbench-json.md) every report has.
func checkSchema(_ path: String, mode: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    let data = try #require(FileManager.default.contents(atPath: path), sourceLocation: sourceLocation)
    let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], sourceLocation: sourceLocation)
    // The types ftbench encodes read back with Foundation's decoder.
    let document = try JSONDecoder().decode(ReportDocument.self, from: data)
    #expect(document.schema == "ftbench" && document.mode == mode, sourceLocation: sourceLocation)
    #expect(root["schema"] as? String == "ftbench", sourceLocation: sourceLocation)
    #expect(root["version"] as? Int == 1, sourceLocation: sourceLocation)
    #expect(root["mode"] as? String == mode, sourceLocation: sourceLocation)
    #expect(root["command"] is [String], sourceLocation: sourceLocation)
    let machine = try #require(root["machine"] as? [String: Any], sourceLocation: sourceLocation)
    #expect((machine["cores"] as? Int ?? 0) >= 1, sourceLocation: sourceLocation)
    #expect(machine["kernel"] is String && machine["cpu"] is String, sourceLocation: sourceLocation)
    #expect((machine["memory_bytes"] as? Int ?? 0) > 0, sourceLocation: sourceLocation)
    #expect(root["time_unix"] is Int, sourceLocation: sourceLocation)
    for cell in root["throughput"] as? [[String: Any]] ?? [] {
        for key in ["tool", "io", "sink"] { #expect(cell[key] is String, "\(key)", sourceLocation: sourceLocation) }
        for key in ["streams", "repeat", "ok_runs", "timed_out_runs"] { #expect(cell[key] is Int, "\(key)", sourceLocation: sourceLocation) }
        #expect(cell["wall_seconds"] is [String: Any], sourceLocation: sourceLocation)
        #expect(cell["cpu_seconds_per_gib"] is [String: Any], sourceLocation: sourceLocation)
        #expect(cell["peak_rss_kib"] is [String: Any], sourceLocation: sourceLocation)
        #expect(cell["runs"] is [[String: Any]], sourceLocation: sourceLocation)
    }
    for l in root["latency"] as? [[String: Any]] ?? [] {
        let ns = try #require(l["ns"] as? [String: Any], sourceLocation: sourceLocation)
        for key in ["p50", "p90", "p99", "p99_9", "max"] { #expect(ns[key] is Int, "\(key)", sourceLocation: sourceLocation) }
        #expect((l["cdf"] as? [[Any]])?.isEmpty == false, sourceLocation: sourceLocation)
        #expect(l["name"] is String && l["measures"] is String, sourceLocation: sourceLocation)
    }
    for c in root["comparisons"] as? [[String: Any]] ?? [] {
        for key in ["workload", "metric", "peer", "status"] { #expect(c[key] is String, "\(key)", sourceLocation: sourceLocation) }
    }
    return root
}

/// Parses the SVG as XML and returns its element names.
func checkSVG(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String] {
    let data = try #require(FileManager.default.contents(atPath: path), sourceLocation: sourceLocation)
    final class Names: NSObject, XMLParserDelegate {
        var names: [String] = []
        func parser(_ p: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            names.append(name)
        }
    }
    let parser = XMLParser(data: data)
    let names = Names()
    parser.delegate = names
    #expect(parser.parse(), "SVG is not well-formed XML: \(String(describing: parser.parserError))", sourceLocation: sourceLocation)
    #expect(names.names.first == "svg", sourceLocation: sourceLocation)
    return names.names
}

@Suite(.serialized) struct FTBenchTests {
    @Test func throughputSweepsEveryPath() throws {
        let tmp = TempDir("ftbench")
        defer { tmp.cleanup() }
        let r = try run(ftbenchPath, ["throughput", "--size", "2M", "--io", "sendfile,splice,copy,zc", "--chunk", "64K,1M",
                                      "--repeat", "1", "--warmup", "1", "--json", tmp.path + "/t.json", "--svg", tmp.path + "/t.svg",
                                      "--work", tmp.path + "/work"])
        #expect(r.status == 0, "\(r.stderr)")
        let root = try checkSchema(tmp.path + "/t.json", mode: "throughput")
        let cells = root["throughput"] as? [[String: Any]] ?? []
        #expect(cells.count == 8)
        #expect(cells.allSatisfy { $0["ok_runs"] as? Int == 1 }, "\(cells.map { $0["runs"] ?? "" })")
        #expect(Set(cells.compactMap { $0["io"] as? String }) == ["sendfile", "splice", "copy", "zc"])
        let names = try checkSVG(tmp.path + "/t.svg")
        #expect(names.filter { $0 == "polyline" }.count == 4, "one line per io path")
        #expect(r.stdout.contains("GB/s"))
    }

    @Test func throughputMeasuresParallelStreams() throws {
        let tmp = TempDir("ftbench")
        defer { tmp.cleanup() }
        let r = try run(ftbenchPath, ["throughput", "--size", "6M", "--io", "sendfile", "--chunk", "1M", "--streams", "1,4",
                                      "--repeat", "1", "--warmup", "0", "--json", tmp.path + "/t.json", "--work", tmp.path + "/work"])
        #expect(r.status == 0, "\(r.stderr)")
        let cells = try checkSchema(tmp.path + "/t.json", mode: "throughput")["throughput"] as? [[String: Any]] ?? []
        #expect(cells.compactMap { $0["streams"] as? Int } == [1, 4])
        #expect(cells.allSatisfy { $0["ok_runs"] as? Int == 1 }, "\(cells.map { $0["runs"] ?? "" })")
        #expect(cells.last?["sink"] as? String != "null", "four streams land in files")
        #expect(r.stdout.contains("streams"))
    }

    @Test func latencyThroughTheEngineAndAChatRoom() throws {
        let tmp = TempDir("ftbench")
        defer { tmp.cleanup() }
        let r = try run(ftbenchPath, ["latency", "-t", "0.3", "-m", "64", "--chat", "--json", tmp.path + "/l.json", "--svg", tmp.path + "/l.svg"])
        #expect(r.status == 0, "\(r.stderr)")
        let root = try checkSchema(tmp.path + "/l.json", mode: "latency")
        let names = (root["latency"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(names == ["ft engine tcp", "ft engine udp", "ft chat room (tcp)"])
        #expect((root["latency"] as? [[String: Any]] ?? []).allSatisfy { ($0["samples"] as? Int ?? 0) > 10 })
        _ = try checkSVG(tmp.path + "/l.svg")
    }

    @Test func compareListsEveryPeerAndMarksMissingOnesSkipped() throws {
        let tmp = TempDir("ftbench")
        defer { tmp.cleanup() }
        // A PATH without iperf3, so its row must say skipped.
        let bin = tmp.sub("bin")
        for tool in ["socat", "nc", "tar", "rsync", "sockperf", "sh", "mkdir", "rm", "sync", "cat"] {
            if let real = which(tool) { symlink(real, bin + "/" + tool) }
        }
        let r = try run(ftbenchPath, ["compare", "--size", "2M", "--files", "20", "--repeat", "1", "-t", "0.3",
                                      "--json", tmp.path + "/c.json", "--svg", tmp.path + "/c.svg", "--work", tmp.path + "/work"],
                        environment: ["PATH": bin])
        #expect(r.status == 0, "\(r.stderr)")
        let root = try checkSchema(tmp.path + "/c.json", mode: "compare")
        let rows = root["comparisons"] as? [[String: Any]] ?? []
        let peers = Set(rows.compactMap { $0["peer"] as? String })
        for p in ["socat -b 1M", "nc", "iperf3 -F -Z", "tar | nc", "rsync daemon", "sockperf tcp --full-rtt", "sockperf udp --full-rtt"] {
            #expect(peers.contains(p), "\(p) missing from \(peers)")
        }
        let iperf = rows.first { $0["peer"] as? String == "iperf3 -F -Z" }
        #expect((iperf?["status"] as? String)?.hasPrefix("skipped: iperf3 not on PATH") == true, "\(String(describing: iperf))")
        let measured = rows.filter { ($0["status"] as? String).map { $0.hasPrefix("goal") || $0 == "measured" } ?? false }
        #expect(measured.count >= 10, "\(rows.map { $0["status"] ?? "" })")
        #expect(rows.contains { $0["workload"] as? String == "chat room line (client → room → client)" })
        _ = try checkSVG(tmp.path + "/c.svg")
        #expect(r.stdout.contains("ft/peer"))
    }

    @Test func aHangingPeerIsTimedOutAndMarked() throws {
        let tmp = TempDir("ftbench")
        defer { tmp.cleanup() }
        // A "socat" that listens like the real one but never finishes.
        let bin = tmp.sub("bin")
        let fake = bin + "/socat"
        try """
            #!/bin/sh
            case "$*" in *TCP-LISTEN*) port=$(echo "$*" | sed 's/.*TCP-LISTEN:\\([0-9]*\\).*/\\1/'); exec nc -l 127.0.0.1 "$port" > /dev/null ;; esac
            exec sleep 600
            """.write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        for tool in ["nc", "sh", "sed", "sleep", "mkdir", "sync", "rm"] {
            if let real = which(tool) { symlink(real, bin + "/" + tool) }
        }
        let r = try run(ftbenchPath, ["compare", "--only", "file", "--size", "1M", "--repeat", "1", "--timeout", "2",
                                      "--json", tmp.path + "/c.json", "--work", tmp.path + "/work"],
                        environment: ["PATH": bin], seconds: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let root = try checkSchema(tmp.path + "/c.json", mode: "compare")
        let socat = (root["comparisons"] as? [[String: Any]] ?? []).first { $0["peer"] as? String == "socat -b 1M" }
        #expect((socat?["status"] as? String)?.contains("timed out after 2 s") == true, "\(String(describing: socat))")
        #expect(r.stdout.contains("timed out"))
    }

    @Test func serveAndConnect() throws {
        let tmp = TempDir("ftbench")
        defer { tmp.cleanup() }
        let port = freePort()
        let serve = try Child(ftbenchPath, ["serve", "--listen", "127.0.0.1:\(port)", "--dir", tmp.sub("in")])
        #expect(serve.waitForOutput("ready on"))
        let r = try run(ftbenchPath, ["throughput", "--connect", "127.0.0.1:\(port)", "--size", "1M", "--io", "sendfile",
                                      "--chunk", "1M", "--repeat", "2", "--warmup", "0", "--json", tmp.path + "/t.json"])
        #expect(r.status == 0, "\(r.stderr)")
        let cells = try checkSchema(tmp.path + "/t.json", mode: "throughput")["throughput"] as? [[String: Any]] ?? []
        #expect(cells.first?["ok_runs"] as? Int == 2)
        serve.kill(SIGINT)
        _ = serve.wait(seconds: 10)
    }

    @Test func badInputExitsTwoWithOneLine() throws {
        let unused = freePort()
        for args in [["throughput", "--io", "warp"], ["throughput", "--chunk", "0"], ["throughput", "--size", "lots"],
                     ["throughput", "--connect", "127.0.0.1:\(unused)", "--size", "1M"], ["latency", "--proto", "sctp"],
                     ["compare", "--only", "everything"], ["throughput", "--streams", "17"],
                     ["throughput", "--streams", "4", "--io", "copy"]] {
            let r = try run(ftbenchPath, args)
            #expect(r.status == 2, "\(args): \(r.status) \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").first?.contains("Error") == true || r.stderr.contains("ftbench:"), "\(args): \(r.stderr)")
        }
    }

    @Test func sockperfOutputIsParsed() {
        let text = """
            sockperf: \u{1B}[2;35mTotal 26221 observations\u{1B}[0m; each percentile contains 262.21 observations
            sockperf: ---> <MAX> observation =  153.521
            sockperf: ---> percentile 99.000 =   34.890
            sockperf: ---> percentile 50.000 =   20.053
            sockperf: ---> <MIN> observation =    7.216
            """
        let parsed = Sockperf.parse(text)
        #expect(parsed?.count == 26_221)
        #expect(parsed?.percentiles[50] == 20.053)
        #expect(parsed?.percentiles[99] == 34.890)
        #expect(parsed?.percentiles[100] == 153.521)
    }
}
