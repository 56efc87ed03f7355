import ArgumentParser

@main
struct FTBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ftbench",
        abstract: "Measure ft's data paths side by side with nc, socat, iperf3 and sockperf.")
}
