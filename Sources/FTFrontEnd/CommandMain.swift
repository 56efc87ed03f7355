import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

extension ParsableCommand {
    /// Parses and runs the command line. `reported` turns a program's own
    /// error (already told to the user) into its exit status; anything else
    /// is ArgumentParser's: help exits 0, a usage error exits 2 with its
    /// message, other failures 1.
    public static func runExiting(reported: (any Error) -> Int32?) {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if let status = reported(error) { Glibc.exit(status) }
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { Console.stdout.line(message) }
                Glibc.exit(0)
            }
            Console.stderr.line(message)
            Glibc.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}
