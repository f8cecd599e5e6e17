import ArgumentParser
import Foundation
import Logging
import SluiceModels
import SluiceTensor

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Run gated vision backbones over images and videos.",
        subcommands: [Classify.self, ClassifyVideo.self, Segment.self, Run.self, Jobs.self, Worker.self, Infer.self, Models.self, Benchmark.self, Probe.self, Serve.self, Tokenize.self, EmbedText.self])

    /// ArgumentParser's main, except that a `CommandError`, thrown from a command's `run()` or
    /// `validate()`, ends the process with its one line and status 1.
    static func main() {
        LoggingSystem.bootstrap { _ in StderrLogHandler() }
        // A write past the file-size limit (RLIMIT_FSIZE) fails with EFBIG, reported like a full disk,
        // instead of killing the process mid-write.
        signal(SIGXFSZ, SIG_IGN)
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            // ArgumentParser wraps what `validate()` throws; the only non-ArgumentParser errors thrown
            // while parsing are the commands' own `CommandError`s, which it reports as plain failures.
            let message = Self.message(for: error)
            if exitCode(for: error) == .failure && !message.isEmpty { report(message) }
            exit(withError: error)
        }
        do {
            try command.run()
        } catch let error as CommandError {
            report(error.message)
        } catch let error as ExitCode {
            exit(withError: error)
        } catch let error as CleanExit {
            exit(withError: error)
        } catch let error as ValidationError {
            exit(withError: error)
        } catch where exitCode(for: error) == .success {
            // `sluice --help`, `sluice COMMAND --help`: ArgumentParser's help command "fails" with the text.
            exit(withError: error)
        } catch {
            // Anything else a command lets through (a sink that cannot be written, a store error) is
            // still one line that names what failed.
            report("\(error)")
        }
    }

    private static func report(_ message: String) -> Never {
        FileHandle.standardError.write(Data("sluice: error: \(message)\n".utf8))
        Foundation.exit(1)
    }
}

/// Messages to the user that are not records: one line each on stderr.
let log = Logger(label: "sluice")

/// A failure of the whole command (not of one item): the root prints it as `sluice: error: MESSAGE`
/// and exits with status 1.
struct CommandError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Runs async work from a synchronous command (the root's `main` is synchronous) and waits for it;
/// an error it throws ends the command as a `CommandError` with its description.
func runAsync(_ body: @escaping @Sendable () async throws -> Void) throws(CommandError) {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var failure: (any Error)?
    Task {
        do { try await body() } catch { failure = error }
        done.signal()
    }
    done.wait()
    if let failure { throw failure as? CommandError ?? CommandError("\(failure)") }
}

/// The named model with weights from FILE or the model store, whatever its task.
func loadModel(_ model: String, weights: String?) throws(CommandError) -> (ModelCard, LoadedModel) {
    do {
        return try Configuration.current.modelStore.load(model, weights: weights.map { URL(fileURLWithPath: $0) })
    } catch {
        throw CommandError("\(error)")
    }
}

/// The named classifier (commands that need logits: `infer`, `benchmark`).
func loadClassifier(_ model: String, weights: String?) throws(CommandError) -> (ModelCard, any ImageClassifier) {
    do {
        return try Configuration.current.modelStore.loadClassifier(model, weights: weights.map { URL(fileURLWithPath: $0) })
    } catch {
        throw CommandError("\(error)")
    }
}

struct ThreadOptions: ParsableArguments {
    @Option(help: "Worker threads for kernels and OpenBLAS (default: SLUICE_THREADS or all cores).")
    var threads: Int?
    func apply() { Configuration.apply(threads: threads) }
}

/// The exit statuses that `sluice run --help` documents (1 is a `CommandError`).
extension ExitCode {
    /// Items failed and --strict was given.
    static let itemsFailed = ExitCode(2)
    /// The job was cancelled with `sluice jobs cancel`.
    static let cancelled = ExitCode(3)
    /// Ctrl-C.
    static let interrupted = ExitCode(130)
}
