/// The name a push goes by in both sides' NDJSON events and logs: the
/// first four bytes of the session id the sender puts in its hello, in
/// hex, so a sender's log and a receiver's can be matched line by line.
package enum PushLabel {
    package static func of(_ sessionID: [UInt8]) -> String {
        sessionID.prefix(4).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
