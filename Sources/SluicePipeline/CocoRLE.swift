// COCO run-length encoding of binary masks, exactly as pycocotools (`common/maskApi.c`, PyPI 2.0.11) writes and reads
// it; see ../shared/docs/segmentation.md §5.4. Pure Swift, no Foundation.
//
// - A mask of h×w pixels is scanned in column-major (Fortran) order, linear index x·h + y.
// - `counts` alternates run lengths of 0s and 1s, starting with a run of 0s (0 when pixel (0, 0) is set); the last
//   run is always written, and the counts sum to h·w (`rleEncode`).
// - The compressed string (`rleToString`) writes each count, or for i > 2 its difference from the count two before,
//   as a signed little-endian varint of 5-bit groups, one character ('0' + group, bit 0x20 = more) per group.
// - area (`rleArea`) is the sum of the odd-position counts; the box (`rleToBbox`) is [x, y, w, h] over the
//   foreground runs, a run that crosses a column spanning every row.
//
// Reading (`init(height:width:compressed:)`, `init(height:width:counts:)`, Decodable) is strict where pycocotools
// is not (it trusts its input): it throws on characters outside '0'...'o', a value cut off by the end of the text,
// a value longer than 7 characters, negative counts, counts beyond pycocotools' 32 bits, and counts that do not
// sum to h·w. Zero-length runs inside the list are kept, as pycocotools keeps them.

/// Why a COCO RLE could not be read.
public enum CocoRLEError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A negative side, or more pixels than pycocotools' 32-bit counts can hold.
    case invalidSize(height: Int, width: Int)
    /// No counts at all (pycocotools always writes at least one).
    case noCounts
    /// A byte of the compressed text outside '0'...'o' (48...111).
    case invalidCharacter(offset: Int)
    /// The text ends inside a value (its last character has the continuation bit 0x20).
    case unterminatedValue(offset: Int)
    /// A value spans more than 7 characters (35 bits, enough for any 32-bit count or difference).
    case overlongValue(offset: Int)
    /// Count `index` is negative (directly, or after adding back the count two before it).
    case negativeCount(index: Int, value: Int)
    /// Count `index` does not fit pycocotools' 32-bit unsigned counts.
    case countTooLarge(index: Int, value: Int)
    /// The counts do not cover the mask: they sum to `sum` (or more, if reading stopped there) instead of h·w.
    case countsSumMismatch(sum: Int, expected: Int)

    public var description: String {
        switch self {
        case .invalidSize(let h, let w): return "COCO RLE: invalid size [\(h), \(w)]"
        case .noCounts: return "COCO RLE: no counts"
        case .invalidCharacter(let offset): return "COCO RLE: invalid character at offset \(offset) (expected '0'...'o')"
        case .unterminatedValue(let offset): return "COCO RLE: the text ends inside the value starting at offset \(offset)"
        case .overlongValue(let offset): return "COCO RLE: the value at offset \(offset) is longer than 7 characters"
        case .negativeCount(let index, let value): return "COCO RLE: count \(index) is negative (\(value))"
        case .countTooLarge(let index, let value): return "COCO RLE: count \(index) (\(value)) exceeds 32 bits"
        case .countsSumMismatch(let sum, let expected):
            return "COCO RLE: the counts sum to \(sum), not height × width = \(expected)"
        }
    }
}

/// A COCO run-length encoding as pycocotools produces it (`pycocotools.mask.encode`), for one binary mask.
public struct CocoRLE: Sendable, Equatable, Hashable {
    public let height: Int, width: Int
    /// Alternating run lengths in column-major order, starting with a run of zeros.
    public let counts: [Int]

    /// Counts already known to be valid.
    init(height: Int, width: Int, validCounts: [Int]) {
        self.height = height; self.width = width; self.counts = validCounts
    }

    /// Encodes a binary mask given row-major: pixel (x, y) is set when `isSet(y * width + x)`.
    public init(height: Int, width: Int, isSet: (Int) -> Bool) {
        precondition(height >= 0 && width >= 0, "mask of \(height)x\(width)")
        var counts: [Int] = []
        var previous = false, run = 0
        for x in 0..<width {
            var index = x
            for _ in 0..<height {
                let value = isSet(index)
                if value != previous { counts.append(run); run = 0; previous = value }
                run += 1
                index += width
            }
        }
        counts.append(run)
        self.init(height: height, width: width, validCounts: counts)
    }

    /// Encodes the pixels of a row-major class map (e.g. `ClassMap.classes`) that equal `value`.
    public init(classes: [UInt16], width: Int, height: Int, value: UInt16) {
        precondition(height >= 0 && width >= 0 && classes.count == width * height,
                     "class map of \(width)x\(height) holds \(classes.count) values")
        var counts: [Int] = []
        classes.withUnsafeBufferPointer { pixels in
            var previous = false, run = 0
            for x in 0..<width {
                var index = x
                for _ in 0..<height {
                    let set = pixels[index] == value
                    if set != previous { counts.append(run); run = 0; previous = set }
                    run += 1
                    index += width
                }
            }
            counts.append(run)
        }
        self.init(height: height, width: width, validCounts: counts)
    }

    /// One encoding per value present in a row-major class map, all from a single column-major pass.
    /// Equal to `CocoRLE(classes:width:height:value:)` for each value present; empty for an empty map.
    public static func encodeAll(classes: [UInt16], width: Int, height: Int) -> [UInt16: CocoRLE] {
        precondition(height >= 0 && width >= 0 && classes.count == width * height,
                     "class map of \(width)x\(height) holds \(classes.count) values")
        guard let maxValue = classes.max() else { return [:] }
        // Every change of class at column-major position i ends a run for both classes: the run of 1s of the
        // class before and the run of 0s of the class after. `last[c]` is where class c's current run began.
        var runs = [[Int]](repeating: [], count: Int(maxValue) + 1)
        var last = [Int](repeating: 0, count: Int(maxValue) + 1)
        classes.withUnsafeBufferPointer { pixels in
            var previous = -1, position = 0
            for x in 0..<width {
                var index = x
                for _ in 0..<height {
                    let value = Int(pixels[index])
                    if value != previous {
                        if previous >= 0 { runs[previous].append(position - last[previous]); last[previous] = position }
                        runs[value].append(position - last[value]); last[value] = position
                        previous = value
                    }
                    position += 1
                    index += width
                }
            }
        }
        let total = classes.count
        var result: [UInt16: CocoRLE] = [:]
        for value in runs.indices where !runs[value].isEmpty {
            runs[value].append(total - last[value])
            result[UInt16(value)] = CocoRLE(height: height, width: width, validCounts: runs[value])
        }
        return result
    }

    /// An encoding from its uncompressed counts (the `counts` list of COCO ground truth for crowd regions).
    /// Throws unless the counts are non-negative, fit 32 bits, and sum to `height * width`.
    public init(height: Int, width: Int, counts: [Int]) throws {
        let total = try Self.pixelCount(height: height, width: width)
        guard !counts.isEmpty else { throw CocoRLEError.noCounts }
        var sum = 0
        for (index, count) in counts.enumerated() {
            if count < 0 { throw CocoRLEError.negativeCount(index: index, value: count) }
            if count > Int(UInt32.max) { throw CocoRLEError.countTooLarge(index: index, value: count) }
            sum += count
            if sum > total { throw CocoRLEError.countsSumMismatch(sum: sum, expected: total) }
        }
        if sum != total { throw CocoRLEError.countsSumMismatch(sum: sum, expected: total) }
        self.init(height: height, width: width, validCounts: counts)
    }

    /// Decodes pycocotools' compressed string (`rleFrString`), strictly (see the top of this file).
    public init(height: Int, width: Int, compressed: String) throws {
        let total = try Self.pixelCount(height: height, width: width)
        var counts: [Int] = []
        var sum = 0
        var utf8 = compressed.utf8.makeIterator()
        var offset = 0
        while let first = utf8.next() {
            let start = offset
            var byte = first, value = 0, shift = 0
            while true {
                guard byte >= 48 && byte <= 111 else { throw CocoRLEError.invalidCharacter(offset: offset) }
                let group = Int(byte - 48)
                value |= (group & 0x1f) << shift
                shift += 5
                offset += 1
                if group & 0x20 == 0 {
                    if group & 0x10 != 0 { value |= -1 << shift }   // sign-extend from the last group
                    break
                }
                guard shift < 35 else { throw CocoRLEError.overlongValue(offset: start) }
                guard let next = utf8.next() else { throw CocoRLEError.unterminatedValue(offset: start) }
                byte = next
            }
            let index = counts.count
            if index > 2 { value += counts[index - 2] }
            if value < 0 { throw CocoRLEError.negativeCount(index: index, value: value) }
            if value > Int(UInt32.max) { throw CocoRLEError.countTooLarge(index: index, value: value) }
            sum += value
            if sum > total { throw CocoRLEError.countsSumMismatch(sum: sum, expected: total) }
            counts.append(value)
        }
        guard !counts.isEmpty else { throw CocoRLEError.noCounts }
        if sum != total { throw CocoRLEError.countsSumMismatch(sum: sum, expected: total) }
        self.init(height: height, width: width, validCounts: counts)
    }

    /// h·w, or why a mask of that size cannot be a pycocotools RLE.
    static func pixelCount(height: Int, width: Int) throws -> Int {
        guard height >= 0, width >= 0 else { throw CocoRLEError.invalidSize(height: height, width: width) }
        let (total, overflow) = height.multipliedReportingOverflow(by: width)
        guard !overflow, total <= Int(UInt32.max) else { throw CocoRLEError.invalidSize(height: height, width: width) }
        return total
    }

    /// pycocotools' compressed string (`rleToString`): ASCII '0'...'o', which includes a backslash and a backtick.
    public var compressed: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(counts.count * 2)
        for index in counts.indices {
            var value = counts[index]
            if index > 2 { value -= counts[index - 2] }
            var more = true
            while more {
                var group = value & 0x1f
                value >>= 5   // arithmetic shift, as C's on a signed long
                more = group & 0x10 != 0 ? value != -1 : value != 0
                if more { group |= 0x20 }
                bytes.append(UInt8(group + 48))
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The number of set pixels (`rleArea`): the sum of the runs of 1s.
    public var area: Int {
        var area = 0
        var index = 1
        while index < counts.count { area += counts[index]; index += 2 }
        return area
    }

    /// [x, y, width, height] of the set pixels as pycocotools' `rleToBbox` computes it: x over the columns the runs
    /// of 1s touch, y over their rows, except that a run crossing from one column into the next spans all rows
    /// (which is then also the exact extent). [0, 0, 0, 0] for an empty mask. (pycocotools gives
    /// [w, h, 2³²−1, 2³²−1] for an empty mask whose counts list has a zero-length run of 1s, which its own
    /// encoder never writes.)
    public var boundingBox: [Int] {
        var xs = width, ys = height, xe = 0, ye = 0
        var start = 0, found = false
        for (index, count) in counts.enumerated() {
            defer { start += count }
            guard index & 1 == 1, count > 0 else { continue }
            found = true
            let end = start + count - 1
            let xStart = start / height, xEnd = end / height
            xs = min(xs, xStart); xe = max(xe, xEnd)
            if xStart < xEnd {
                ys = 0; ye = height - 1
            } else {
                ys = min(ys, start % height); ye = max(ye, end % height)
            }
        }
        guard found else { return [0, 0, 0, 0] }
        return [xs, ys, xe - xs + 1, ye - ys + 1]
    }

    /// The mask, row-major (`result[y * width + x]`).
    public func decode() -> [Bool] {
        var mask = [Bool](repeating: false, count: height * width)
        mask.withUnsafeMutableBufferPointer { out in
            var position = 0
            for (index, count) in counts.enumerated() {
                if index & 1 == 1 && count > 0 {
                    var y = position % height, x = position / height
                    for _ in 0..<count {
                        out[y * width + x] = true
                        y += 1
                        if y == height { y = 0; x += 1 }
                    }
                }
                position += count
            }
        }
        return mask
    }
}

/// COCO's JSON form: `{"size": [h, w], "counts": "<compressed>"}`. Decoding also takes the uncompressed form,
/// `"counts": [Int]`; both are checked as the throwing initialisers check them.
extension CocoRLE: Codable {
    enum CodingKeys: String, CodingKey { case size, counts }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let size = try container.decode([Int].self, forKey: .size)
        guard size.count == 2 else {
            throw DecodingError.dataCorruptedError(forKey: .size, in: container,
                                                   debugDescription: "COCO RLE: size must be [height, width]")
        }
        do {
            if let text = try? container.decode(String.self, forKey: .counts) {
                self = try CocoRLE(height: size[0], width: size[1], compressed: text)
            } else {
                self = try CocoRLE(height: size[0], width: size[1],
                                   counts: container.decode([Int].self, forKey: .counts))
            }
        } catch let error as CocoRLEError {
            let key: CodingKeys
            if case .invalidSize = error { key = .size } else { key = .counts }
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([height, width], forKey: .size)
        try container.encode(compressed, forKey: .counts)
    }
}
