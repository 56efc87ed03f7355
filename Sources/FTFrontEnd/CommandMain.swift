import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

extension AsyncParsableCommand {
    /// `runExiting` for a command tree with async subcommands.
    package static func runExiting(reported: @Sendable (any Error) -> Int32?) async {
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            exitReporting(error, reported: reported)
        }
    }
}

extension ParsableCommand {
    /// Parses and runs the command line. `reported` turns a program's own
    /// error (already told to the user) into its exit status; anything else
    /// is ArgumentParser's: help exits 0, a usage error exits 2 with its
    /// message, other failures 1.
    package static func runExiting(reported: (any Error) -> Int32?) {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exitReporting(error, reported: reported)
        }
    }

    /// Exits with the status `error` calls for, saying what ArgumentParser has to say.
    static func exitReporting(_ error: any Error, reported: (any Error) -> Int32?) -> Never {
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
