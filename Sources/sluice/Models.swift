import ArgumentParser
import Foundation
import SluiceModels

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import and list model weights.", subcommands: [Import.self, List.self])

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
                print("\(card.name)\t\(card.family)\t\(imported ? "imported" : "not imported")")
            }
        }
    }
}
