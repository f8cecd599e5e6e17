import XCTest
@testable import SluiceModels
import SluiceMedia

/// ADE20K's classes and palette against ../shared/docs/segmentation.md §3.8 (mmseg `datasets/ade.py`).
final class ADE20KTests: XCTestCase {
    func testClassNamesAreMmsegsInIndexOrder() {
        let labels = LabelSet.ade20k
        XCTAssertEqual(labels.name, "ade20k")
        XCTAssertEqual(labels.labels.count, 150)
        let spots: [Int: String] = [
            0: "wall", 1: "building", 2: "sky", 6: "road", 7: "bed ", 8: "windowpane", 12: "person",
            44: "chest of drawers", 48: "skyscraper", 56: "pool table", 89: "television receiver", 100: "poster",
            123: "trade name", 136: "traffic light", 138: "ashcan", 141: "crt screen", 144: "bulletin board",
            148: "clock", 149: "flag",
        ]
        for (index, name) in spots { XCTAssertEqual(labels.label(index), name, "class \(index)") }
        XCTAssertEqual(labels.label(150), "class 150")
    }

    /// mmseg spells class 7 "bed " with a trailing space; no other name has outer spaces, and all are distinct.
    func testOnlyBedHasATrailingSpace() {
        let labels = LabelSet.ade20k.labels
        XCTAssertEqual(labels[7], "bed ")
        XCTAssertEqual(Array(labels[7].utf8), Array("bed".utf8) + [0x20])
        let padded = labels.indices.filter { labels[$0].hasPrefix(" ") || labels[$0].hasSuffix(" ") }
        XCTAssertEqual(padded, [7])
        XCTAssertEqual(Set(labels).count, 150)
    }

    func testPaletteIsTheDossiersList() {
        let expected = """
            787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d 787846 08ff33 ff0652
            8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0
            ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff
            8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff 0bc8c8 ff5200 00fff5 003dff
            00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff
            ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 000aff 0070ff 3300ff 00c2ff 007aff
            00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070
            5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500
            0abed4 d6ff00 00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 005cff
            b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff
            """.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { hex -> RGBColor in
                let value = Int(hex, radix: 16)!
                return RGBColor(UInt8(value >> 16), UInt8((value >> 8) & 0xff), UInt8(value & 0xff))
            }
        XCTAssertEqual(expected.count, 150)
        XCTAssertEqual(Palette.ade20k, expected)
        XCTAssertEqual(LabelSet.ade20k.palette, Palette.ade20k)
    }

    func testPaletteSpotChecks() {
        let palette = Palette.ade20k
        XCTAssertEqual(palette.count, 150)
        XCTAssertEqual(palette[0], RGBColor(120, 120, 120))     // wall
        XCTAssertEqual(palette[2], RGBColor(6, 230, 230))       // sky
        XCTAssertEqual(palette[7], RGBColor(204, 5, 255))       // bed
        XCTAssertEqual(palette[12], RGBColor(150, 5, 61))       // person
        XCTAssertEqual(palette[20], RGBColor(0, 102, 200))      // car
        XCTAssertEqual(palette[66], RGBColor(255, 0, 0))        // flower
        XCTAssertEqual(palette[132], RGBColor(255, 255, 0))     // sculpture
        XCTAssertEqual(palette[149], RGBColor(92, 0, 255))      // flag
        XCTAssertEqual(LabelSet.ade20k.color(12), RGBColor(150, 5, 61))
        XCTAssertEqual(LabelSet.ade20k.color(150), Palette.voc[150])   // past the palette: the VOC colour map
    }

    /// Road (6) and skyscraper (48) share 8c8c8c upstream; no other two classes share a colour.
    func testOnlyRoadAndSkyscraperShareAColour() {
        let palette = Palette.ade20k
        XCTAssertEqual(palette[6], RGBColor(140, 140, 140))
        XCTAssertEqual(palette[48], RGBColor(140, 140, 140))
        let shared = Dictionary(grouping: palette.indices, by: { palette[$0] }).values.filter { $0.count > 1 }
        XCTAssertEqual(shared.map { $0.sorted() }, [[6, 48]])
        XCTAssertEqual(Set(palette).count, 149)
    }
}
