import Foundation
import XCTest
@testable import SluiceModels
import SluiceMedia
import SluiceTensor

/// Parity of UperNet on HorNet (mmseg 0.x `EncoderDecoder` + `UPerHead`, HorNet's segmentation backbone)
/// with scripts/reference/upernet.py, on the deterministic recipe weights of scripts/reference/hornet.py
/// (`HorNetRecipe`), so only outputs are committed; one small case loads a real mmseg checkpoint file
/// ({'meta', 'state_dict', 'optimizer'}).
final class UperNetTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("upernet")
    static let script = "/usr/bin/python3 scripts/reference/upernet.py"

    struct Case {
        let name: String
        let backbone: HorNetConfiguration
        let head: UperNetConfiguration
        let inputShape: [Int]
        let mode: SegmentationMode
        let weights: String
        let outputs: [String: String]
        let subsample: Int
    }

    static func fixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let url = fixtures.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            XCTFail("missing UperNet fixture \(name): regenerate with `\(script)`", file: file, line: line)
            throw XCTSkip("missing fixture \(name)")
        }
        return url
    }

    static func cases() throws -> [Case] {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("manifest.json"))) as! [String: Any]
        return (manifest["cases"] as! [[String: Any]]).map { item in
            let b = item["backbone"] as! [String: Any], h = item["head"] as! [String: Any]
            let gf = (b["gflayer"] as! [Any]).map { entry -> HorNetConfiguration.GlobalFilter? in
                (entry as? [Int]).map { .init(h: $0[0], w: $0[1]) }
            }
            let backbone = HorNetConfiguration(baseDim: b["base_dim"] as! Int, depths: b["depths"] as! [Int],
                                               orders: b["orders"] as! [Int], gflayer: gf,
                                               s: b["s"] as? Double ?? 1.0 / 3.0, numClasses: 0)
            let head = UperNetConfiguration(channels: h["channels"] as! Int, poolScales: h["pool_scales"] as! [Int],
                                            numClasses: h["num_classes"] as! Int,
                                            auxiliaryChannels: h["aux_channels"] as! Int)
            var mode = SegmentationMode.whole
            if item["mode"] as? String == "slide" {
                let crop = item["crop"] as! [Int], stride = item["stride"] as! [Int]
                mode = .slide(cropHeight: crop[0], cropWidth: crop[1], strideHeight: stride[0], strideWidth: stride[1])
            }
            return Case(name: item["name"] as! String, backbone: backbone, head: head,
                        inputShape: item["input_shape"] as! [Int], mode: mode, weights: item["weights"] as! String,
                        outputs: item["outputs"] as! [String: String], subsample: item["subsample"] as? Int ?? 1)
        }
    }

    static func namedCase(_ name: String) throws -> Case {
        guard let found = try cases().first(where: { $0.name == name }) else {
            XCTFail("upernet/manifest.json has no case \(name): regenerate with `\(script)`")
            throw XCTSkip("no case \(name)")
        }
        return found
    }

    static func card(_ item: Case) -> ModelCard {
        ModelRegistry.upernetCard(name: item.name, backbone: item.backbone, head: item.head, mode: item.mode,
                                  input: .rescaled(longSide: 2048, shortSide: 512, interpolation: .bilinear,
                                                   mean: [0, 0, 0], std: [1, 1, 1]),
                                  labels: LabelSet(name: "test", labels: []))
    }

    /// The segmenter of a case, built through its card from the recipe's weights or the committed file.
    static func model(_ item: Case) throws -> UperNet {
        let card = card(item)
        let stateDict = item.weights == "recipe" ? HorNetRecipe.stateDict(card.parameterShapes)
            : try Checkpoint.load(try fixture(item.weights))
        guard case .segmenter(let segmenter) = try card.load(stateDict: stateDict, source: item.weights) else {
            throw XCTSkip("not a segmenter")
        }
        return segmenter as! UperNet
    }

    static func expected(_ item: Case, _ output: String) throws -> Tensor {
        guard let file = item.outputs[output] else { throw XCTSkip("\(item.name) has no \(output)") }
        return try NPY.read(contentsOf: try fixture(file)).nchwToNHWC()
    }

    /// Every `step`-th row and column of NHWC `x` (the full-size fixtures keep logits[:, :, ::4, ::4]).
    static func subsampled(_ x: Tensor, _ step: Int) -> Tensor {
        guard step > 1 else { return x }
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oh, ow) = ((h + step - 1) / step, (w + step - 1) / step)
        var out = Tensor(zeros: [n, oh, ow, c])
        for image in 0..<n {
            for y in 0..<oh {
                for xx in 0..<ow {
                    for ch in 0..<c {
                        out.data[((image * oh + y) * ow + xx) * c + ch] = x.data[((image * h + y * step) * w + xx * step) * c + ch]
                    }
                }
            }
        }
        return out
    }

    func assertClose(_ actual: Tensor, _ expected: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, expected.shape, what, file: file, line: line)
        guard actual.shape == expected.shape else { return }
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0.1, "\(what): fixture looks trivial", file: file, line: line)
        let error = Tensor.maxRelativeError(actual, expected)
        print("UperNet parity \(what): max relative error \(error)")
        XCTAssertLessThanOrEqual(error, 1e-4, "\(what): max relative error \(error)", file: file, line: line)
    }

    func assertParity(_ name: String, threads: [Int] = [1, 2]) throws {
        let item = try Self.namedCase(name)
        let model = try Self.model(item)
        let input = HorNetRecipe.input(item.inputShape).nchwToNHWC()
        defer { Parallel.configure(threads: nil) }
        for count in threads {
            Parallel.configure(threads: count)
            if item.outputs["features.0"] != nil {
                let features = model.backbone.features(input)
                for (i, feature) in features.enumerated() {
                    assertClose(feature, try Self.expected(item, "features.\(i)"), "\(name) backbone stage \(i)")
                }
                assertClose(model.decodeHead(features), try Self.expected(item, "head"), "\(name) decode_head")
            }
            let logits = Self.subsampled(model.segment(input), item.subsample)
            assertClose(logits, try Self.expected(item, item.subsample > 1 ? "logits_sub\(item.subsample)" : "logits"),
                        "\(name) logits (\(count) thread(s))")
        }
    }

    // Reduced: dims [16, 32, 64, 128], depths [1, 1, 2, 1], head channels 32, 11 classes.

    func testReduced7x7Whole() throws { try assertParity("reduced_7x7_whole") }
    /// Sides that are no multiple of 32: the strided convs floor, adaptive-pool bins overlap.
    func testReduced7x7WholeOddSize() throws { try assertParity("reduced_7x7_whole_odd") }
    /// Global filters stored at 6x4 and 3x3, resized to each stage's frequency grid.
    func testReducedGlobalFilterWhole() throws { try assertParity("reduced_gf_whole") }
    /// Slide windows (crop 64, stride 43): several windows, the last one shifted back.
    func testReducedGlobalFilterSlide() throws { try assertParity("reduced_gf_slide") }
    /// An image shorter than the crop.
    func testReduced7x7SlideShortImage() throws { try assertParity("reduced_7x7_slide_short") }
    /// A real mmseg checkpoint file: {'meta', 'state_dict', 'optimizer'}, num_batches_tracked included.
    func testSmallestMmsegCheckpoint() throws { try assertParity("smallest_checkpoint", threads: [2]) }

    // Full size: the official tiny shapes (UPerHead 512 channels, 150 classes), non-square inputs.

    func testFullSizeTiny7x7Whole() throws { try assertParity("full_tiny_7x7_whole", threads: [2]) }
    func testFullSizeTinyGFWhole() throws { try assertParity("full_tiny_gf_whole", threads: [2]) }
    func testFullSizeTinyGFSlide() throws { try assertParity("full_tiny_gf_slide", threads: [2]) }

    // Cards, keys and inference geometry.

    func testRegisteredCardsMatchTheOfficialParameterCounts() throws {
        // The dossier's counts (backbone + decode head + auxiliary head, BatchNorm buffers excluded).
        for (name, millions) in [("upernet_hornet_tiny_7x7", 52.21), ("upernet_hornet_tiny_gf", 54.63)] {
            let card = try ModelRegistry.card(named: name)
            XCTAssertEqual(card.task, .semanticSegmentation)
            let parameters = card.parameterShapes.filter { !$0.0.hasSuffix("running_mean") && !$0.0.hasSuffix("running_var") }
                .map { $0.1.reduce(1, *) }.reduce(0, +)
            XCTAssertEqual(Double(parameters) / 1e6, millions, accuracy: 0.005, name)
            XCTAssertEqual(card.labels.labels.count, 150)
        }
        let gf = try ModelRegistry.card(named: "upernet_hornet_tiny_gf").parameterShapes
        XCTAssertEqual(gf.first { $0.0 == "backbone.stages.2.0.gnconv.dwconv.complex_weight" }?.1, [240, 24, 13, 2])
        XCTAssertEqual(gf.first { $0.0 == "backbone.stages.3.0.gnconv.dwconv.complex_weight" }?.1, [496, 12, 7, 2])
        XCTAssertEqual(gf.first { $0.0 == "decode_head.bottleneck.conv.weight" }?.1, [512, 512 + 4 * 512, 3, 3])
    }

    func testAClassificationCheckpointIsRefusedWithTheMissingHeadTensors() throws {
        let classifier = try ModelRegistry.card(named: "hornet_tiny_gf")
        let card = try ModelRegistry.card(named: "upernet_hornet_tiny_gf")
        XCTAssertThrowsError(try card.load(stateDict: HorNetRecipe.stateDict(classifier.parameterShapes), source: "hornet_tiny_gf.pth")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("missing decode_head.conv_seg.weight [150, 512, 1, 1]"), text)
            XCTAssertTrue(text.contains("missing decode_head.fpn_bottleneck.conv.weight"), text)
            XCTAssertTrue(text.contains("hornet_tiny_gf.pth"), text)
        }
    }

    func testTheAuxiliaryHeadIsOptional() throws {
        let item = try Self.namedCase("reduced_7x7_whole")
        let card = Self.card(item)
        let withoutAux = StateDict(card.parameterShapes.filter { !$0.0.hasPrefix("auxiliary_head.") }
            .map { ($0.0, HorNetRecipe.tensor($0.0, $0.1)) })
        XCTAssertNoThrow(try card.load(stateDict: withoutAux))
    }

    func testSlideWindowsFollowMmseg() {
        let crop = (512, 512), stride = (341, 341)
        XCTAssertEqual(UperNet.windows(height: 512, width: 683, crop: crop, stride: stride).map(\.x), [0, 171])
        let wide = UperNet.windows(height: 512, width: 2048, crop: crop, stride: stride)
        XCTAssertEqual(wide.map(\.x), [0, 341, 682, 1023, 1364, 1536])
        XCTAssertTrue(wide.allSatisfy { $0.w == 512 && $0.h == 512 && $0.y == 0 })
        let small = UperNet.windows(height: 300, width: 200, crop: crop, stride: stride)
        XCTAssertEqual(small.count, 1)
        XCTAssertEqual(small[0].h, 300); XCTAssertEqual(small[0].w, 200)
        XCTAssertEqual(UperNet.windows(height: 1000, width: 384, crop: (384, 384), stride: (256, 256)).map(\.y), [0, 256, 512, 616])
    }

    /// mmseg's keep-ratio rescale to (2048, 512): min(2048 / long side, 512 / short side), rounded half up.
    func testRescaleFollowsMmseg() {
        XCTAssertTrue(ImageInput.rescaledSize(width: 683, height: 512, longSide: 2048, shortSide: 512) == (683, 512))
        XCTAssertTrue(ImageInput.rescaledSize(width: 8000, height: 2000, longSide: 2048, shortSide: 512) == (2048, 512))
        XCTAssertTrue(ImageInput.rescaledSize(width: 20000, height: 500, longSide: 2048, shortSide: 512) == (2048, 51))
        XCTAssertTrue(ImageInput.rescaledSize(width: 100, height: 75, longSide: 2048, shortSide: 512) == (683, 512))
        XCTAssertTrue(ImageInput.rescaledSize(width: 640, height: 480, longSide: 2048, shortSide: 512) == (683, 512))
    }
}
