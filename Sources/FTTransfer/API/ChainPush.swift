import FTEngine
import FTWire
import Logging

/// One host's part in a chain push.
public struct HostOutcome: Sendable, Equatable {
    /// The host as it was named, `HOST[:PORT]`.
    public var host: String
    /// It holds every file, verified.
    public var ok: Bool
    public var files: UInt64
    public var bytes: UInt64
    /// Why it failed; empty when ok.
    public var message: String
    /// The pass (1-based) that reached it, or failed it.
    public var pass: Int
}

/// Pushes `paths` along a chain of receivers, as `ft send --to h1,h2,…`
/// does: one stream goes to the first host, which keeps a copy and relays
/// it to the next, and so on; every host verifies its own copy, so N hosts
/// cost the sender's link one push. The hosts share one code.
///
/// A host that fails before data reaches it is passed by inside the chain
/// (its upstream tries the next). One that fails mid-push cuts the chain
/// there: the hosts after it get nothing in this pass, so another pass
/// starts a new chain of exactly those hosts. Passes repeat until every
/// host succeeded or failed, at most once per host.
///
/// - Parameters:
///   - paths: Files and directories, as for a push to one host.
///   - hosts: `HOST[:PORT]` of each host, in chain order (at most 64).
///   - code: The one code every host of the chain was started with.
///   - options: As for a push to one host; a chain takes neither
///     `encrypt`, `streams` over 1, `delete` nor `dryRun`.
///   - logger: Where warnings go; nowhere by default.
///   - progress: Each pass's push events, on its push's thread.
///   - passStarted: Called before each pass with its number and its hosts.
/// - Returns: Every host's outcome, in the order given.
/// - Throws: ``FTError`` for a request that cannot be made (a malformed
///   host, options a chain does not take) or when the task is cancelled.
public func push(
    _ paths: [String], along hosts: [String], code: String?, options: PushOptions = PushOptions(),
    logger: Logger? = nil, progress: @escaping @Sendable (ProgressEvent) -> Void = { _ in },
    passStarted: (_ pass: Int, _ hosts: [String]) -> Void = { _, _ in }
) async throws(FTError) -> [HostOutcome] {
    if let why = chainProblem(hosts, options: options) { throw .invalid(why) }
    let base = try SendConfig(paths, to: hosts[0], code: code, options: options)
    let logger = logger ?? .silent
    var results: [String: HostOutcome] = [:]
    var pass = 0
    while pass < hosts.count {
        let remaining = hosts.filter { results[$0] == nil }
        guard let head = remaining.first else { break }
        pass += 1
        passStarted(pass, remaining)
        var config = base
        config.endpoint = try! Endpoint.parse(head, defaultPort: Endpoint.ftPort)
        config.relay = Array(remaining.dropFirst())
        do throws(FTError) {
            let summary = try await runPush(config, logger: logger, progress: progress)
            results[head] = HostOutcome(host: head, ok: true, files: UInt64(summary.files),
                                        bytes: summary.bytes + summary.skippedBytes, message: "", pass: pass)
            for o in summary.relayed where results[o.host] == nil && remaining.contains(o.host) {
                results[o.host] = HostOutcome(host: o.host, ok: o.ok, files: o.files, bytes: o.bytes, message: o.message, pass: pass)
            }
        } catch {
            switch error.kind {
            case .cancelled:
                throw error
            case .invalidRequest:
                // Our side is at fault: no host can get this push.
                for h in remaining { results[h] = HostOutcome(host: h, ok: false, files: 0, bytes: 0, message: error.description, pass: pass) }
            default:
                results[head] = HostOutcome(host: head, ok: false, files: 0, bytes: 0, message: error.description, pass: pass)
            }
        }
    }
    return hosts.map {
        results[$0] ?? HostOutcome(host: $0, ok: false, files: 0, bytes: 0, message: "never reached", pass: pass)
    }
}

/// Why `hosts` cannot be a chain for a push with `options`, worded for a
/// person; nil if they can. `ft send --to` asks the same.
package func chainProblem(_ hosts: [String], options: PushOptions) -> String? {
    guard !hosts.isEmpty else { return "a chain needs at least one host" }
    guard hosts.count <= Relay.maxHops else { return "--to names \(hosts.count) hosts; a chain holds at most \(Relay.maxHops)" }
    for h in hosts {
        guard !h.isEmpty else { return "--to has an empty host; write h1,h2,h3" }
        guard Relay.isValidHost(h) else { return "--to host '\(h)' is not HOST[:PORT]" }
        do {
            guard try Endpoint.parse(h, defaultPort: Endpoint.ftPort).host != nil else { return "--to host '\(h)' has no host" }
        } catch {
            return "--to host '\(h)': \(error)"
        }
    }
    guard Set(hosts).count == hosts.count else { return "--to names a host twice" }
    if options.encrypt { return "--encrypt is not relayed: a chain sends in the clear (each host checks the code and the hashes)" }
    if let why = DataStreamRules.refusal(streams: options.streams, path: options.dataPath, encrypt: false, chain: true) { return why }
    if options.delete || options.dryRun { return "--delete and --dry-run are for a push to one receiver, not --to" }
    return nil
}
