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
    @Option(help: "Input side in pixels, or HxW (default: the model's crop size; 512 for segmenters).") var size: String?
    @Option(name: .customLong("set"), help: "Segmenter setting KEY=VALUE[,KEY=VALUE] as for `infer` (mode=whole|slide, crop, stride).")
    var settings: [String] = []
    @Option(help: "Fewest timed passes.") var passes = 5
    @Option(help: "Video models: frames per timed clip (one clip, stepped frame by frame).") var frames = 8
    @Flag(help: "Print each layer's median wall time inside the forward pass instead (one JSON line per layer; models that report layers only).")
    var layers = false
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        let (card, loaded) = try loadModel(model, weights: weights)
        if case .streamingVideo(let network) = loaded, let trecvit = network as? TRecViT {
            try timeVideo(trecvit)
            return
        }
        let side = card.input.image.fixedSide ?? 512
        var (height, width) = (side, side)
        if let size {
            let parts = size.split(separator: "x").compactMap { Int($0) }
            guard !parts.isEmpty, parts.count <= 2, parts.count == size.split(separator: "x").count, parts.allSatisfy({ $0 > 0 }) else {
                throw CommandError("--size \(size): expected N or HxW")
            }
            (height, width) = (parts[0], parts.last!)
        }
        // Seeded: reproducible input, and no getrandom system call per value (3M of them at 1024 px).
        var generator = SplitMix64(seed: 1)
        let input = Tensor(shape: [batch, height, width, 3],
                           data: (0..<(batch * height * width * 3)).map { _ in Float.random(in: -1...1, using: &generator) })
        if case .segmenter(let segmenter) = loaded {
            guard var upernet = segmenter as? UperNet else { throw CommandError("\(model): no tensor-level inference") }
            upernet.mode = try Infer.mode(settings, cardMode: upernet.mode)
            try timeSegmenter(upernet, input: input)
            return
        }
        guard let classifier = loaded.classifier else { throw CommandError("\(model) does \(card.task.rawValue); `benchmark` times classifiers and segmenters") }
        guard settings.isEmpty else { throw CommandError("\(model) takes no --set options") }
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
                     Parallel.threads, batch, height, rate, 1000 * elapsed / Double(passes.count), 1000 * Double(batch) / median(passes)))
    }

    /// Times `segment` (one warm-up pass, then the median of the timed ones).
    func timeSegmenter(_ segmenter: UperNet, input: Tensor) throws {
        _ = segmenter.segment(input)
        var times: [Double] = []
        repeatPasses {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = segmenter.segment(input)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        let mode: String
        switch segmenter.mode {
        case .whole: mode = "whole"
        case .slide(let ch, let cw, let sh, let sw): mode = "slide \(ch)x\(cw)/\(sh)x\(sw)"
        }
        print(String(format: "{\"engine\": \"sluice\", \"threads\": %d, \"batch\": %d, \"size\": \"%dx%d\", \"mode\": \"%@\", \"passes\": %d, \"ms_median\": %.1f}",
                     Parallel.threads, input.shape[0], input.shape[1], input.shape[2], mode, times.count, median(times)))
    }

    /// Times TRecViT's official clip forward on one clip of `frames` random frames: the median ms per frame.
    func timeVideo(_ model: TRecViT) throws {
        guard frames > 0 else { throw CommandError("--frames must be positive") }
        var configuration = try Infer.videoConfiguration(model.configuration, settings)
        configuration.framesPerClip = frames
        let network = model.with(configuration)
        let side = configuration.gridHeight * configuration.patch
        var generator = SplitMix64(seed: 1)
        let video = Tensor(shape: [1, frames, side, side, 3],
                           data: (0..<(frames * side * side * 3)).map { _ in Float.random(in: 0..<1, using: &generator) })
        _ = try network.classify(videos: video)
        var times: [Double] = []
        var failure: Error?
        repeatPasses {
            let start = DispatchTime.now().uptimeNanoseconds
            do { _ = try network.classify(videos: video) } catch { failure = error }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6 / Double(frames))
        }
        if let failure { throw CommandError("\(failure)") }
        print(String(format: "{\"engine\": \"sluice\", \"threads\": %d, \"model\": \"%@\", \"frames\": %d, \"passes\": %d, \"ms_per_frame_median\": %.3f}",
                     Parallel.threads, self.model, frames, times.count, median(times)))
    }

    /// Runs `pass` at least 5 times and for at least `seconds`; the seconds it took.
    @discardableResult
    func repeatPasses(_ pass: () -> Void) -> Double {
        let start = Date()
        var count = 0
        while count < passes || Date().timeIntervalSince(start) < seconds {
            pass()
            count += 1
        }
        return Date().timeIntervalSince(start)
    }

    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
