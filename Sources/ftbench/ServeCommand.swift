import ArgumentParser
import FTBench
import FTEngine
import FTFrontEnd

#if canImport(Glibc)
import Glibc
#endif

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive pushes for `ftbench throughput --connect` on another host.",
        discussion: "Runs `ft recv --overwrite` into DIR until interrupted; each push replaces the last.")

    @Option(help: ArgumentHelp("Address to listen on.", valueName: "addr:port"))
    var listen: String = ":\(Endpoint.ftPort)"

    @Option(help: ArgumentHelp("Directory the pushes land in (default: a new one in /tmp).", valueName: "dir"))
    var dir: String?

    @Option(help: "I/O engine for ft: auto, io_uring or poll.")
    var engine: String = "auto"

    func run() throws {
        let ft = try ftBinary()
        let (target, _) = try workDirectory(dir)
        let argv = [ft, "recv", "--listen", listen, "--dir", target, "--overwrite", "--engine", engine]
        let cargv = argv.map { strdup($0) } + [nil]
        execv(ft, cargv)
        throw BenchFailure(message: "cannot run \(ft): \(String(cString: strerror(errno)))")
    }
}
