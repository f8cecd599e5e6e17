import Foundation
import SluiceTensor

/// NumPy `.npz` (a zip of `.npy` files, stored by `np.savez` or deflated by `np.savez_compressed`;
/// keys are the entry names without `.npy`) and single `.npy` files (key: the file name's stem).
enum NumpyArchive {
    static func loadNPZ(_ zip: CheckpointZip, url: URL) throws -> StateDict {
        var stateDict = StateDict(source: url)
        var skipped: [String] = []
        for entry in zip.entries {
            guard entry.path.hasSuffix(".npy") else {
                skipped.append(entry.path)
                continue
            }
            let key = String(entry.path.dropLast(".npy".count))
            let (tensor, dtype) = try decode(try zip.contents(of: entry), key: key, file: url.path)
            stateDict.set(tensor, forKey: key, dtype: dtype)
        }
        if !skipped.isEmpty {
            stateDict.notes.append("skipped \(skipped.count) zip entries that are not .npy: "
                + skipped.prefix(10).joined(separator: ", "))
        }
        if stateDict.isEmpty && !zip.entries.isEmpty {
            throw CheckpointError.noTensors(file: url.path, detail: "zip archive without .npy entries "
                + "(neither an .npz nor a torch checkpoint)")
        }
        return stateDict
    }

    static func loadNPY(_ data: Data, url: URL) throws -> StateDict {
        let key = url.deletingPathExtension().lastPathComponent
        let (tensor, dtype) = try decode(data, key: key, file: url.path)
        var stateDict = StateDict(source: url)
        stateDict.set(tensor, forKey: key, dtype: dtype)
        return stateDict
    }

    /// One .npy array as float32, with the element type its header declared. Decoded here rather than
    /// with `NPY.decode` to convert in bulk straight from the (mapped or extracted) bytes, and to read
    /// Fortran-order arrays as strided views.
    static func decode(_ data: Data, key: String, file: String) throws -> (Tensor, CheckpointDType) {
        let header = try headerFields(of: data, key: key, file: file)
        let code = header.descr.drop { "<|=".contains($0) }
        let dtypes: [Substring: CheckpointDType] = [
            "f4": .f32, "f2": .f16, "f8": .f64, "i8": .i64, "i4": .i32, "i2": .i16, "i1": .i8,
            "u8": .u64, "u4": .u32, "u2": .u16, "u1": .u8, "b1": .bool,
        ]
        guard !header.descr.hasPrefix(">"), let dtype = dtypes[code] else {
            throw CheckpointError.unsupportedDType(file: file, key: key, dtype: "numpy '\(header.descr)'")
        }
        let shape = header.shape
        let count = checkedElementCount(shape) ?? Int.max
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: dtype.byteWidth)
        guard !overflow, data.count - header.dataOffset >= byteCount else {
            throw CheckpointError.truncated(file: file, detail: "array '\(key)' \(header.descr) \(shape) needs "
                + (overflow ? "more bytes than fit in 64 bits" : "\(byteCount) bytes") + ", \(data.count - header.dataOffset) present")
        }
        // Partial products of a shape whose product fits cannot overflow.
        var strides = [Int](repeating: 1, count: shape.count)
        if header.fortranOrder {
            for axis in shape.indices.dropFirst() { strides[axis] = strides[axis - 1] * shape[axis - 1] }
        } else {
            for axis in shape.indices.reversed().dropFirst() { strides[axis] = strides[axis + 1] * shape[axis + 1] }
        }
        guard count > 0 else { return (Tensor(zeros: shape), dtype) }
        let tensor = data.withUnsafeBytes { raw in
            ElementConversion.makeTensor(dtype: dtype, storage: raw.baseAddress! + header.dataOffset,
                                         view: StridedView(offset: 0, shape: shape, strides: strides))
        }
        return (tensor, dtype)
    }

    /// The header dict of a .npy file (versions 1-3): `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
    private static func headerFields(of data: Data, key: String, file: String) throws
        -> (descr: String, fortranOrder: Bool, shape: [Int], dataOffset: Int) {
        let bytes = [UInt8](data.prefix(12))
        guard bytes.count >= 10, bytes[0] == 0x93, bytes[1...5].elementsEqual("NUMPY".utf8) else {
            throw CheckpointError.malformed(file: file, detail: "array '\(key)' lacks the \\x93NUMPY magic")
        }
        let lengthFieldSize = bytes[6] == 1 ? 2 : 4
        guard bytes.count >= 8 + lengthFieldSize else {
            throw CheckpointError.truncated(file: file, detail: "array '\(key)' header length missing")
        }
        let headerLength = bytes[8..<8 + lengthFieldSize].reversed().reduce(0) { $0 << 8 | Int($1) }
        let headerStart = 8 + lengthFieldSize
        guard data.count >= headerStart + headerLength else {
            throw CheckpointError.truncated(file: file, detail: "array '\(key)' header cut short")
        }
        let start = data.startIndex + headerStart
        let header = String(decoding: data[start..<start + headerLength], as: UTF8.self)
        func value(of field: String) throws -> Substring {
            guard let range = header.range(of: "'\(field)':") else {
                throw CheckpointError.malformed(file: file, detail: "array '\(key)' header has no '\(field)'")
            }
            return header[range.upperBound...].drop { $0 == " " }
        }
        let descrText = try value(of: "descr")
        guard let quote = descrText.first, quote == "'" || quote == "\"",
              let close = descrText.dropFirst().firstIndex(of: quote) else {
            // Structured dtypes are lists of fields, not a single type string.
            throw CheckpointError.unsupportedDType(file: file, key: key, dtype: "numpy structured dtype")
        }
        let shapeText = try value(of: "shape")
        guard shapeText.first == "(", let closeParen = shapeText.firstIndex(of: ")") else {
            throw CheckpointError.malformed(file: file, detail: "array '\(key)' has an unreadable shape")
        }
        let dims = shapeText[shapeText.index(after: shapeText.startIndex)..<closeParen]
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shape = dims.compactMap { Int($0) }
        guard shape.count == dims.count, shape.allSatisfy({ $0 >= 0 }) else {
            throw CheckpointError.malformed(file: file, detail: "array '\(key)' has an unreadable shape")
        }
        return (String(descrText[descrText.index(after: descrText.startIndex)..<close]),
                try value(of: "fortran_order").hasPrefix("True"), shape, headerStart + headerLength)
    }
}
