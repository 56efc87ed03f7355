import FTEngine
import FTWire
import Logging

/// `ft send --to h1,h2,…`: one stream to h1, which keeps a copy and relays
/// it to h2, and so on; every host verifies its own copy.
///
/// A host that fails before data reaches it is passed by inside the chain
/// (its upstream tries the next). One that fails mid-push cuts the chain
/// there: the hosts after it get nothing in this pass, so another pass
/// starts a new chain of exactly those hosts. Passes repeat until every
/// host succeeded or failed, at most once per host.
package final class ChainPush {
    package struct HostOutcome: Sendable, Equatable {
        package var host: String
        package var ok: Bool
        package var files: UInt64
        package var bytes: UInt64
        /// Why it failed; empty when ok.
        package var message: String
        /// The pass (1-based) that reached it, or failed it.
        package var pass: Int
    }

    package let hosts: [String]
    package let base: SendConfig
    package let logger: Logger

    /// `base` gives everything but the endpoint and relay list.
    package init(hosts: [String], base: SendConfig, logger: Logger) {
        precondition(!hosts.isEmpty)
        self.hosts = hosts
        self.base = base
        self.logger = logger
    }

    /// Runs the passes; `events` gets each pass's push events, and
    /// `passStarted` the hosts each pass starts with.
    package func run(events: @escaping ProgressHandler,
                    passStarted: (_ pass: Int, _ chain: [String]) -> Void = { _, _ in }) -> [HostOutcome] {
        var results: [String: HostOutcome] = [:]
        var pass = 0
        while pass < hosts.count {
            let remaining = hosts.filter { results[$0] == nil }
            guard let head = remaining.first else { break }
            pass += 1
            passStarted(pass, remaining)
            var config = base
            do {
                config.endpoint = try Endpoint.parse(head, defaultPort: Endpoint.ftPort)
            } catch {
                results[head] = HostOutcome(host: head, ok: false, files: 0, bytes: 0, message: "\(error)", pass: pass)
                continue
            }
            config.relay = Array(remaining.dropFirst())
            do throws(TransferError) {
                let summary = try Sender(config: config, logger: logger).run(events: events)
                results[head] = HostOutcome(host: head, ok: true, files: UInt64(summary.files), bytes: summary.bytes + summary.skippedBytes,
                                            message: "", pass: pass)
                for o in summary.relayed where results[o.host] == nil && remaining.contains(o.host) {
                    results[o.host] = HostOutcome(host: o.host, ok: o.ok, files: o.files, bytes: o.bytes, message: o.message, pass: pass)
                }
            } catch {
                if case .source = error {
                    // Our side is at fault: no host can get this push.
                    for h in remaining { results[h] = HostOutcome(host: h, ok: false, files: 0, bytes: 0, message: error.description, pass: pass) }
                    break
                }
                results[head] = HostOutcome(host: head, ok: false, files: 0, bytes: 0, message: error.description, pass: pass)
            }
        }
        return hosts.map {
            results[$0] ?? HostOutcome(host: $0, ok: false, files: 0, bytes: 0, message: "never reached", pass: pass)
        }
    }
}
