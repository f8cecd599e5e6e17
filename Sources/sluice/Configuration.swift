import Foundation
import Logging
import SluiceMedia
import SluiceModels
import SluiceTensor

/// Everything the process reads from its environment, read once here and passed down: library modules
/// read no environment variables.
///   SLUICE_HOME        the model store and job queue folder (default ~/.local/share/sluice)
///   SLUICE_THREADS     kernel threads when --threads is not given (default: all cores)
///   SLUICE_FFMPEG_LOG  FFmpeg's own log level: quiet, fatal (default), error, warning, info, verbose, debug
///   SLUICE_MODEL_MIRROR  where `models pull` downloads from instead of the official addresses (MIRROR/FILE)
///   SLUICE_QUEUE       the shared job queue (postgres://…) when --queue is not given (default: the SQLite store)
///   SLUICE_MINILM      all-MiniLM-L6-v2's folder for `tokenize` and `embed-text` when --weights is not given
struct Configuration {
    var home: URL
    var threads: Int?
    var ffmpegLogLevel: String?
    var modelMirror: String? = nil
    var queue: String? = nil
    var minilm: String? = nil

    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Configuration {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let home = value("SLUICE_HOME").map { URL(fileURLWithPath: $0, isDirectory: true) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share/sluice", isDirectory: true)
        return Configuration(home: home, threads: value("SLUICE_THREADS").flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil },
                             ffmpegLogLevel: value("SLUICE_FFMPEG_LOG"), modelMirror: value("SLUICE_MODEL_MIRROR"),
                             queue: value("SLUICE_QUEUE"), minilm: value("SLUICE_MINILM"))
    }

    /// The process-wide configuration (read on first use).
    nonisolated(unsafe) static var current = fromEnvironment()

    /// Applies the settings that are process-wide by nature: kernel threads (`--threads` wins over
    /// SLUICE_THREADS) and FFmpeg's log level.
    static func apply(threads flag: Int?) {
        Parallel.configure(threads: flag ?? current.threads)
        FFmpegLog.setLevel(named: current.ffmpegLogLevel)
    }

    var modelStore: ModelStore { ModelStore(home: home) }

    var jobQueuePath: String { home.appendingPathComponent("jobs.sqlite").path }
}

/// One line per message on stderr, as the CLI has always printed them (warnings and errors prefixed
/// with `sluice: `), through swift-log so library code can log the same way.
struct StderrLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let prefix = event.level >= .warning ? "sluice: " : ""
        // Structured context (a server's request id, method, path) follows the message as key=value.
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let context = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        FileHandle.standardError.write(Data("\(prefix)\(event.message)\(context)\n".utf8))
    }
}
