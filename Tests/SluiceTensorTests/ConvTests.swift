import XCTest
import SluiceTensor

/// Conv2d against torch.nn.functional.conv2d: PyTorch NCHW input and OIHW weights go through the real
/// layout conversion (Tensor.nchwToNHWC, Conv2d(torchWeight:)), the output comes back as NCHW.
final class ConvTests: XCTestCase {
    static let gemmCases = [
        "conv1x1", "conv1x1_nobias", "conv1x1_g2", "conv1x1_s2", "conv3x3_s1", "conv3x3_s2", "conv3x3_s2_nopad",
        "conv3x3_dil2", "conv3x3_g2", "conv3x3_g4", "conv_nonsquare", "conv_same_s2", "conv_bn",
        "conv_bn_nobias_relu6", "conv_multiplier2", "conv_silu",
    ]
    static let depthwiseCases = [
        "dw3x3_s1", "dw3x3_s2", "dw5x5_s2", "dw7x7_s2", "dw7x7_s1", "dw3x3_dil2", "dw3x3_nopad", "dw_nonsquare",
        "dw5x5_same_s2", "dw3x3_same_s2", "dw_bn_silu", "dw_bn_relu6_s2",
    ]

    /// Builds the layer a fixture describes (with BatchNorm folded in when it has one).
    static func layer(_ name: String) throws -> Conv2d {
        let params = try Fixtures.parameters(name)
        let weight = try Fixtures.tensor(name + "_w")
        let bias = params.flag("bias") ? try Fixtures.tensor(name + "_b") : nil
        let padding: Padding2D?
        if params["padding"] as? String == "same" {
            padding = nil
        } else if let p = params["padding"] as? [Int], p.count == 4 {
            padding = Padding2D(top: p[0], left: p[1], bottom: p[2], right: p[3])
        } else {
            throw FixtureError(description: "\(name): bad padding in manifest; \(regenerateHint)")
        }
        var conv = Conv2d(torchWeight: weight, bias: bias, stride: try params.int2("stride"), padding: padding,
                          dilation: try params.int2("dilation"), groups: params["groups"] as? Int ?? 1)
        if params.flag("batchnorm") {
            let norm = BatchNorm(weight: try Fixtures.tensor(name + "_bn_weight"),
                                 bias: try Fixtures.tensor(name + "_bn_bias"),
                                 runningMean: try Fixtures.tensor(name + "_bn_mean"),
                                 runningVar: try Fixtures.tensor(name + "_bn_var"), eps: try params.float("eps"))
            conv = conv.folding(norm)
        }
        return conv
    }

    func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let params = try Fixtures.parameters(name)
        let x = try Fixtures.tensor(name + "_x")
        let expected = try Fixtures.tensor(name + "_y")
        let conv = try Self.layer(name)
        XCTAssertEqual(conv.isDepthwise, name.hasPrefix("dw"), "\(name): wrong kernel chosen", file: file, line: line)
        if let same = params["expectedPadding"] as? [Int] {
            let p = conv.padding(forHeight: x.shape[2], width: x.shape[3])
            XCTAssertEqual([p.top, p.left, p.bottom, p.right], same, "\(name): TF SAME padding", file: file, line: line)
        }
        let y = conv(x.nchwToNHWC(), activation: try params.activation()).nhwcToNCHW()
        assertParity(y, expected, name, file: file, line: line)
    }

    /// Every conv fixture the script writes is checked by a test below.
    func testEveryConvFixtureHasATest() throws {
        let fixtures = Set(try Fixtures.manifest().filter { $0.value["kind"] as? String == "conv" }.keys)
        XCTAssertEqual(fixtures, Set(Self.gemmCases + Self.depthwiseCases))
    }

    func testConv1x1PointwiseGEMM() throws { try check("conv1x1") }
    func testConv1x1NoBias() throws { try check("conv1x1_nobias") }
    func testConv1x1Grouped() throws { try check("conv1x1_g2") }
    func testConv1x1Stride2() throws { try check("conv1x1_s2") }
    func testConv3x3Stride1() throws { try check("conv3x3_s1") }
    func testConv3x3Stride2() throws { try check("conv3x3_s2") }
    func testConv3x3Stride2NoPadding() throws { try check("conv3x3_s2_nopad") }
    func testConv3x3Dilation2() throws { try check("conv3x3_dil2") }
    func testConvGroups2() throws { try check("conv3x3_g2") }
    func testConvGroups4() throws { try check("conv3x3_g4") }
    func testConvNonSquare() throws { try check("conv_nonsquare") }
    func testConvTFSamePadding() throws { try check("conv_same_s2") }
    func testConvFoldedBatchNorm() throws { try check("conv_bn") }
    func testConvNoBiasFoldedBatchNormReLU6() throws { try check("conv_bn_nobias_relu6") }
    func testConvChannelMultiplier2() throws { try check("conv_multiplier2") }
    func testConvFusedSiLU() throws { try check("conv_silu") }

    func testDepthwise3x3Stride1() throws { try check("dw3x3_s1") }
    func testDepthwise3x3Stride2() throws { try check("dw3x3_s2") }
    func testDepthwise5x5Stride2() throws { try check("dw5x5_s2") }
    func testDepthwise7x7Stride2() throws { try check("dw7x7_s2") }
    func testDepthwise7x7Stride1() throws { try check("dw7x7_s1") }
    func testDepthwiseDilation2() throws { try check("dw3x3_dil2") }
    func testDepthwiseNoPaddingNoBias() throws { try check("dw3x3_nopad") }
    func testDepthwiseNonSquare() throws { try check("dw_nonsquare") }
    func testDepthwise5x5TFSameStride2() throws { try check("dw5x5_same_s2") }
    func testDepthwise3x3TFSameStride2() throws { try check("dw3x3_same_s2") }
    func testDepthwiseFoldedBatchNormSiLU() throws { try check("dw_bn_silu") }
    func testDepthwiseFoldedBatchNormReLU6Stride2() throws { try check("dw_bn_relu6_s2") }

    func testStandaloneBatchNorm() throws {
        let params = try Fixtures.parameters("batchnorm")
        let norm = BatchNorm(weight: try Fixtures.tensor("batchnorm_weight"), bias: try Fixtures.tensor("batchnorm_bias"),
                             runningMean: try Fixtures.tensor("batchnorm_mean"),
                             runningVar: try Fixtures.tensor("batchnorm_var"), eps: try params.float("eps"))
        let y = norm(try Fixtures.tensor("batchnorm_x").nchwToNHWC()).nhwcToNCHW()
        assertParity(y, try Fixtures.tensor("batchnorm_y"), "batchnorm")
    }

    /// TF "SAME" padding arithmetic on its own (the fixtures cover one even and one odd case each).
    func testSamePaddingArithmetic() {
        let p = Padding2D.same(inputHeight: 224, inputWidth: 224, kernel: (3, 3), stride: (2, 2))
        XCTAssertEqual(p, Padding2D(top: 0, left: 0, bottom: 1, right: 1))
        let q = Padding2D.same(inputHeight: 7, inputWidth: 8, kernel: (5, 5), stride: (1, 2))
        XCTAssertEqual(q, Padding2D(top: 2, left: 1, bottom: 2, right: 2))
        let d = Padding2D.same(inputHeight: 10, inputWidth: 10, kernel: (3, 3), stride: (1, 1), dilation: (2, 2))
        XCTAssertEqual(d, .symmetric(2))
    }
}
