/// A JSON value and its compact writer; `quote` is also what
/// `JSONLineEncoder` writes strings with.
enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSON])
    /// Keys keep their order, so output reads the same every run.
    case object([(String, JSON)])

    /// Compact, one line: fit for NDJSON.
    var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .double(let d):
            if d.isFinite {
                // Three decimals are plenty for rates and seconds.
                let r = (d * 1000).rounded() / 1000
                out += r == r.rounded() && abs(r) < 1e15 ? String(Int64(r)) : String(r)
            } else {
                out += "null"
            }
        case .string(let s): JSON.quote(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += "," }
                JSON.quote(k, into: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        // Most strings (names, hashes, keys) are printable ASCII without
        // a quote or backslash: appended whole, not scalar by scalar.
        var s = s
        if s.withUTF8({ b in !b.contains { $0 &- 0x20 >= 0x5F || $0 == 0x22 || $0 == 0x5C } }) {
            out += s
            out += "\""
            return
        }
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F || (0x80...0x9F).contains(u.value):
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default:
                out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}
