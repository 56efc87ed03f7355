// serve-dir DIR [ADDR:]PORT: serves pushes into DIR until interrupted
// (Ctrl-C). It makes a one-time code unless FT_CODE gives one.
import Dispatch
import FTTransfer
#if canImport(Glibc)
import Glibc
#endif

@main struct ServeDir {
    static func main() async {
        let args = CommandLine.arguments
        guard args.count == 3 else {
            say("usage: serve-dir DIR [ADDR:]PORT   (port 0 picks a free one)\n", to: 2)
            exit(2)
        }
        let code = getenv("FT_CODE").map { String(cString: $0) } ?? Receiver.makeCode()
        do {
            let receiver = try Receiver(directory: args[1], listen: args[2], code: code)
            // Ctrl-C stops serving; pushes under way keep what arrived for a resume.
            signal(SIGINT, SIG_IGN)
            let interrupt = DispatchSource.makeSignalSource(signal: SIGINT, queue: .main)
            interrupt.setEventHandler { receiver.stop() }
            interrupt.resume()

            say("serving \(args[1]) on \(receiver.address); send with: FT_CODE=\(code) ft send 127.0.0.1:\(receiver.port) PATH\n")
            let outcome = try await receiver.run { event in
                switch event {
                case .fileDone(let f): say("received \(f.path) (\(f.bytes) bytes)\n")
                case .failed(let f): say("a push from \(f.peer) failed: \(f.message)\n")
                default: break
                }
            }
            say("served \(outcome.succeeded) of \(outcome.sessions) pushes\n")
        } catch {
            say("serve-dir: \(error)\n", to: 2)
            exit(1)
        }
    }

    static func say(_ text: String, to fd: Int32 = 1) {
        var text = text
        text.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
    }
}
