import ArgumentParser
import Foundation
import SluiceModels
import SluiceTensor

struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model's forward pass on a preprocessed tensor in the official layout (NCHW for PyTorch models).",
        discussion: """
            Classifiers write logits [N, classes]. Segmenters write logits [N, classes, H, W] at the input's size, \
            as mmseg's encode_decode does (--set mode=whole, the default here), or averaged over sliding windows \
            (--set mode=slide, with the card's crop and stride unless --set crop=N|HxW,stride=N|HxW). Video \
            classifiers (TRecViT) take videos [N, T, H, W, 3] in [0, 1] (frames / 255, as the official Colab) and \
            write the clip-averaged logits [N, classes] of the official forward (--set frames_per_clip=N, default \
            the card's 32: T // N clips of equal length).
            """)

    @Option(help: "Registered model name.") var model: String
    @Option(help: "Checkpoint (default: the imported weights).") var weights: String?
    @Option(help: "Input .npy (NAME=FILE for models with several inputs).") var input: [String]
    @Option(help: "Output .npy.") var output: String
    @Option(name: .customLong("set"), help: "Model setting KEY=VALUE[,KEY=VALUE] (segmenters: mode, crop, stride; video classifiers: frames_per_clip).")
    var settings: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        threadOptions.apply()
        guard input.count == 1 else { throw CommandError("\(model) takes one input, got \(input.count)") }
        let (card, loaded) = try loadModel(model, weights: weights)
        let path = input[0].split(separator: "=", maxSplits: 1).last.map(String.init) ?? input[0]
        let x: Tensor
        do {
            x = try NPY.read(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CommandError("\(error)")
        }
        if case .streamingVideo(let network) = loaded, let trecvit = network as? TRecViT {
            guard x.rank == 5, x.shape[4] == 3 else {
                throw CommandError("\(path): expected videos [N, T, H, W, 3] in [0, 1], got \(x.shape)")
            }
            let configured = trecvit.with(try Self.videoConfiguration(trecvit.configuration, settings))
            let logits: Tensor
            do { logits = try configured.classify(videos: x).logits } catch { throw CommandError("\(path): \(error)") }
            do { try NPY.write(logits, to: URL(fileURLWithPath: output)) } catch { throw CommandError("\(error)") }
            return
        }
        guard x.rank == 4, x.shape[1] == 3 else {
            throw CommandError("\(path): expected NCHW input [N, 3, H, W], got \(x.shape)")
        }
        let result: Tensor
        switch loaded {
        case .classifier(let classifier):
            guard settings.isEmpty else { throw CommandError("\(model) takes no --set options") }
            result = classifier(x.nchwToNHWC())
        case .segmenter(let segmenter):
            guard var upernet = segmenter as? UperNet else { throw CommandError("\(model): no tensor-level inference") }
            upernet.mode = try Self.mode(settings, cardMode: upernet.mode)
            guard x.shape[2] >= UperNet.minimumSide, x.shape[3] >= UperNet.minimumSide else {
                throw CommandError("\(path): \(model) needs sides of at least \(UperNet.minimumSide) pixels, got \(x.shape[2])x\(x.shape[3])")
            }
            result = upernet.segment(x.nchwToNHWC()).nhwcToNCHW()
        default:
            throw CommandError("\(model) does \(card.task.rawValue); `infer` runs classifiers, segmenters and video classifiers")
        }
        do {
            try NPY.write(result, to: URL(fileURLWithPath: output))
        } catch {
            throw CommandError("\(error)")
        }
    }

    /// A video classifier's configuration with `--set` applied (frames_per_clip, mode), each key checked.
    static func videoConfiguration(_ configuration: TRecViTConfiguration, _ settings: [String]) throws -> TRecViTConfiguration {
        var result = configuration
        for pair in settings.flatMap({ $0.split(separator: ",") }) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw CommandError("--set \(pair): expected KEY=VALUE (\(TRecViTConfiguration.settingKeys.joined(separator: ", ")))")
            }
            do { result = try result.setting(parts[0], to: parts[1]) } catch { throw CommandError("--set \(error)") }
        }
        return result
    }

    /// The segmentation mode that `--set` asks for: whole unless mode=slide; crop and stride default to
    /// the card's slide setting.
    static func mode(_ settings: [String], cardMode: SegmentationMode) throws -> SegmentationMode {
        var values: [String: String] = [:]
        for pair in settings.flatMap({ $0.split(separator: ",") }) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, ["mode", "crop", "stride"].contains(parts[0]) else {
                throw CommandError("--set \(pair): expected mode=whole|slide, crop=N|HxW or stride=N|HxW")
            }
            values[parts[0]] = parts[1]
        }
        func size(_ key: String, _ fallback: (Int, Int)) throws -> (Int, Int) {
            guard let text = values[key] else { return fallback }
            let parts = text.split(separator: "x").compactMap { Int($0) }
            guard (parts.count == 1 || parts.count == 2) && text.split(separator: "x").count == parts.count,
                  parts.allSatisfy({ $0 > 0 }) else {
                throw CommandError("--set \(key)=\(text): expected a positive N or HxW")
            }
            return parts.count == 1 ? (parts[0], parts[0]) : (parts[0], parts[1])
        }
        var crop = (512, 512), stride = (341, 341)
        if case .slide(let ch, let cw, let sh, let sw) = cardMode { crop = (ch, cw); stride = (sh, sw) }
        switch values["mode"] ?? "whole" {
        case "whole":
            guard values["crop"] == nil && values["stride"] == nil else {
                throw CommandError("--set crop/stride apply to mode=slide")
            }
            return .whole
        case "slide":
            let c = try size("crop", crop), s = try size("stride", stride)
            guard min(c.0, c.1) >= UperNet.minimumSide else {
                throw CommandError("--set crop: windows need sides of at least \(UperNet.minimumSide) pixels")
            }
            return .slide(cropHeight: c.0, cropWidth: c.1, strideHeight: s.0, strideWidth: s.1)
        case let other:
            throw CommandError("--set mode=\(other): expected whole or slide")
        }
    }
}
