// push-dir HOST[:PORT] DIR: pushes DIR to an ft receiver with a progress
// line. The receiver's code comes from FT_CODE, as for `ft send`.
import FTTransfer
#if canImport(Glibc)
import Glibc
#endif

@main struct PushDir {
    static func main() async {
        let args = CommandLine.arguments
        guard args.count == 3 else {
            say("usage: push-dir HOST[:PORT] DIR   (the receiver's code in FT_CODE)\n", to: 2)
            exit(2)
        }
        let code = getenv("FT_CODE").map { String(cString: $0) }
        do {
            let summary = try await push([args[2]], to: args[1], code: code) { event in
                guard case .progress(let p) = event else { return }
                let total = p.totalBytes.map { " of \($0 >> 20) MiB" } ?? ""
                say("\r\(p.bytes >> 20) MiB\(total) at \(Int(p.rate) >> 20) MiB/s")
            }
            say("\nsent \(summary.files) files, \(summary.bytes) bytes in \(summary.seconds) s, verified: \(summary.verified)\n")
        } catch {
            say("\npush-dir: \(error)\n", to: 2)
            exit(1)
        }
    }

    /// Unbuffered, so the progress line shows at once.
    static func say(_ text: String, to fd: Int32 = 1) {
        var text = text
        text.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
    }
}
