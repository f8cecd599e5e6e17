import ArgumentParser
import Foundation
import SluiceModels
import SluiceTensor

struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model's forward pass on a preprocessed tensor in the official layout (NCHW for PyTorch models).")

    @Option(help: "Registered model name.") var model: String
    @Option(help: "Checkpoint (default: the imported weights).") var weights: String?
    @Option(help: "Input .npy (NAME=FILE for models with several inputs).") var input: [String]
    @Option(help: "Output .npy.") var output: String
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let (_, classifier) = try loadClassifier(model, weights: weights)
        guard input.count == 1 else { throw CommandError("\(model) takes one input, got \(input.count)") }
        let path = input[0].split(separator: "=", maxSplits: 1).last.map(String.init) ?? input[0]
        do {
            let x = try NPY.read(contentsOf: URL(fileURLWithPath: path))
            guard x.rank == 4, x.shape[1] == 3 else {
                throw CommandError("\(path): expected NCHW input [N, 3, H, W], got \(x.shape)")
            }
            let logits = classifier(x.nchwToNHWC())
            try NPY.write(logits, to: URL(fileURLWithPath: output))
        } catch let error as CommandError {
            throw error
        } catch {
            throw CommandError("\(error)")
        }
    }
}
