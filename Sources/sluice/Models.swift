import ArgumentParser
import Foundation
import SluiceDownloads
import SluiceModels

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pull, import and list model weights.", subcommands: [Pull.self, Import.self, List.self])

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a checkpoint against a model and store it as NAME.safetensors + NAME.json.")
        @Argument(help: "Checkpoint: PyTorch .pth (zip or legacy), .safetensors, .npz.") var file: String
        @Option(help: "Registered model name.") var model: String

        func run() throws {
            do {
                let summary = try Configuration.current.modelStore.importCheckpoint(URL(fileURLWithPath: file), model: model)
                print("imported \(model) from \(file) (\(summary.format)): \(summary.tensorCount) tensors, "
                      + "\(summary.parameterCount) parameters -> \(summary.weights.path)")
            } catch {
                throw CommandError("\(error)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List registered models and imported weights.")
        func run() throws {
            let store = Configuration.current.modelStore
            for card in ModelRegistry.cards {
                let imported = FileManager.default.fileExists(atPath: store.weightsURL(for: card.name).path)
                let pull = ModelSources.source(for: card.name).map { "pull: yes (\($0.license))" } ?? "pull: no"
                print("\(card.name)\t\(card.family)\t\(imported ? "imported" : "not imported")\t\(pull)")
            }
        }
    }

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download official weights by model name, verify them, and import them.",
            discussion: """
                Downloads go to $SLUICE_HOME/downloads (a cut download resumes where it stopped), are checked \
                against the published size and SHA-256 (a file that does not match is kept aside, not \
                imported), then imported as `models import` does. --mirror URL (or SLUICE_MODEL_MIRROR) \
                downloads URL/FILE instead, for machines without internet access.
                """)
        @Argument(help: "Registered model names (see `sluice models list`).") var models: [String]
        @Option(help: "A mirror serving the same file names (default: SLUICE_MODEL_MIRROR, else the official addresses).")
        var mirror: String?
        @Flag(name: .customLong("accept-license"), help: "Accept the licence of weights that ask for it.") var acceptLicense = false

        func run() throws {
            let sources = try models.map { name throws(CommandError) -> ModelSource in
                guard ModelRegistry.names.contains(name) else { throw CommandError("\(PullError.unknownModel(name))") }
                guard let source = ModelSources.source(for: name) else {
                    throw CommandError("\(PullError.noSource(model: name, why: ModelSources.unavailable(name) ?? "no source"))")
                }
                return source
            }
            let mirror = self.mirror ?? Configuration.current.modelMirror
            let accept = acceptLicense
            let store = Configuration.current.modelStore
            try runAsync {
                let downloader = Downloader()
                let puller = ModelPuller(store: store, downloader: downloader)
                do {
                    for source in sources {
                        let bar = ByteProgress(label: source.model)
                        let summary: ModelPuller.Summary
                        do {
                            summary = try await puller.pull(source, mirror: mirror, acceptLicense: accept) { bar.update($0, $1) }
                        } catch {
                            bar.finish()
                            throw error
                        }
                        bar.finish()
                        let check = summary.verified ? "SHA-256 \(summary.sha256) matches the published one"
                            : "SHA-256 \(summary.sha256) (the source publishes none: recorded in \(summary.imported.card.lastPathComponent))"
                        print("pulled \(source.model)\(summary.reused ? " (already downloaded)" : "") from \(mirror ?? source.urls[0]): \(check); "
                              + "\(summary.imported.tensorCount) tensors, \(summary.imported.parameterCount) parameters -> \(summary.imported.weights.path)")
                    }
                } catch {
                    try? await downloader.shutdown()
                    throw error
                }
                try? await downloader.shutdown()
            }
        }
    }
}

/// Bytes downloaded, bytes/s and ETA on stderr: redrawn on a terminal, a line every 10 s otherwise,
/// and a last line with the total and the mean rate.
final class ByteProgress: @unchecked Sendable {
    private let label: String
    private let interactive = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private let start = Date()
    private var first: Int64?
    private var latest: Int64 = 0
    private var lastDraw = Date()

    init(label: String) { self.label = label }

    static func megabytes(_ bytes: Int64) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }

    func update(_ done: Int64, _ total: Int64?) {
        lock.withLock {
            let now = Date()
            if first == nil { first = done }
            latest = done
            guard now.timeIntervalSince(lastDraw) >= (interactive ? 0.2 : 10) else { return }
            lastDraw = now
            let rate = Double(done - (first ?? 0)) / max(now.timeIntervalSince(start), 1e-3)
            var text = "\(label): \(Self.megabytes(done))"
            if let total, total > 0 {
                let eta = rate > 0 ? Double(total - done) / rate : 0
                text += String(format: " of %@ (%.0f%%), %@/s, ETA %.0f s", Self.megabytes(total), 100 * Double(done) / Double(total),
                               Self.megabytes(Int64(rate)), eta)
            } else {
                text += ", \(Self.megabytes(Int64(rate)))/s"
            }
            FileHandle.standardError.write(Data((interactive ? "\r\(text)  " : "\(text)\n").utf8))
        }
    }

    func finish() {
        lock.withLock {
            guard let first, latest > first else { return }
            let seconds = max(Date().timeIntervalSince(start), 1e-3)
            let text = String(format: "%@: %@ in %.1f s (%@/s)", label, Self.megabytes(latest - first), seconds,
                              Self.megabytes(Int64(Double(latest - first) / seconds)))
            FileHandle.standardError.write(Data(((interactive ? "\r" : "") + text + "\n").utf8))
        }
    }
}
