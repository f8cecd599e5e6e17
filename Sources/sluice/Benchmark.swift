import ArgumentParser
import Foundation
import SluiceModels
import SluiceTensor

struct Benchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a model's forward pass on random input; prints one JSON line.")

    @Option(help: "Registered model name.") var model = "efficientnet_lite0"
    @Option(help: "Checkpoint (default: the imported weights).") var weights: String?
    @Option(help: "Images per forward pass.") var batch = 1
    @Option(help: "Minimum seconds to measure.") var seconds = 3.0
    @Option(help: "Input side in pixels (default: the model's crop size).") var size: Int?
    @Flag(help: "Print each layer's median wall time inside the forward pass instead (one JSON line per layer; models that report layers only).")
    var layers = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let (card, classifier) = try loadClassifier(model, weights: weights)
        let side = size ?? card.input.image.fixedSide ?? 512
        // Seeded: reproducible input, and no getrandom system call per value (3M of them at 1024 px).
        var generator = SplitMix64(seed: 1)
        let input = Tensor(shape: [batch, side, side, 3],
                           data: (0..<(batch * side * side * 3)).map { _ in Float.random(in: -1...1, using: &generator) })
        _ = classifier(input)  // warm-up
        if layers {
            guard let timed = classifier as? any LayerTimedClassifier else {
                throw ValidationError("\(model) does not report per-layer times")
            }
            // A layer that runs once per image (the early ones at batch > 1) counts with its sum.
            var order: [String] = [], times: [String: [Double]] = [:]
            repeatPasses {
                var pass: [String: Double] = [:]
                _ = timed(input) { layer, ms in
                    if times.isEmpty && pass[layer] == nil { order.append(layer) }
                    pass[layer, default: 0] += ms
                }
                for (layer, ms) in pass { times[layer, default: []].append(ms) }
            }
            for layer in order {
                print(String(format: "{\"engine\": \"sluice\", \"threads\": %d, \"batch\": %d, \"layer\": \"%@\", \"ms_median\": %.4f}",
                             Parallel.threads, batch, layer, median(times[layer]!)))
            }
            return
        }
        // Each pass is timed too: the median pass is steadier than the mean on these shared VMs, where
        // a neighbour's burst can slow a few passes by half.
        var passes: [Double] = []
        let elapsed = repeatPasses {
            let passStart = DispatchTime.now().uptimeNanoseconds
            _ = classifier(input)
            passes.append(Double(DispatchTime.now().uptimeNanoseconds - passStart) / 1e6)
        }
        let rate = Double(passes.count * batch) / elapsed
        print(String(format: "{\"engine\": \"sluice\", \"threads\": %d, \"batch\": %d, \"size\": %d, \"kind\": \"model\", \"images_per_s\": %.2f, \"ms_per_batch\": %.3f, \"images_per_s_median_pass\": %.2f}",
                     Parallel.threads, batch, side, rate, 1000 * elapsed / Double(passes.count), 1000 * Double(batch) / median(passes)))
    }

    /// Runs `pass` at least 5 times and for at least `seconds`; the seconds it took.
    @discardableResult
    func repeatPasses(_ pass: () -> Void) -> Double {
        let start = Date()
        var count = 0
        while count < 5 || Date().timeIntervalSince(start) < seconds {
            pass()
            count += 1
        }
        return Date().timeIntervalSince(start)
    }

    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
