import Foundation
import SluiceTensor

/// NumPy `.npy` (format 1.0-3.0) reading and writing: the exchange format for fixtures and for
/// `sluice infer`. It parses untrusted bytes, so it lives here with the other checkpoint formats,
/// compiled with bounds checks (SluiceTensor is built -Ounchecked). Reads little-endian float32/float16/float64 and integer arrays as float32, C order.
public enum NPY {
    public enum Error: Swift.Error, CustomStringConvertible {
        case notNPY(String)
        case unsupported(String)
        public var description: String {
            switch self {
            case .notNPY(let why): return "not a .npy array: \(why)"
            case .unsupported(let why): return "unsupported .npy array: \(why)"
            }
        }
    }

    public static func read(contentsOf url: URL) throws -> Tensor {
        try decode(Data(contentsOf: url))
    }

    public static func decode(_ data: Data) throws -> Tensor {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw Error.notNPY("missing \\x93NUMPY magic")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw Error.notNPY("truncated header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard headerStart + headerLength <= bytes.count,
              let header = String(bytes: bytes[headerStart..<headerStart + headerLength], encoding: .utf8) else {
            throw Error.notNPY("truncated header")
        }
        let descr = try field("descr", in: header)
        let fortran = try field("fortran_order", in: header)
        let shapeText = try field("shape", in: header)
        let shape = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
            .split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw Error.notNPY("negative dimension in shape \(shapeText)") }
        let (count, overflow) = shape.reduce((1, false)) { partial, dimension in
            let product = partial.0.multipliedReportingOverflow(by: dimension)
            return (product.partialValue, partial.1 || product.overflow)
        }
        guard !overflow else { throw Error.notNPY("shape \(shapeText) is too large") }
        let dtype = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\" "))
        let payload = bytes[(headerStart + headerLength)...]
        let values = try convert(payload, dtype: dtype, count: count)
        guard fortran.hasPrefix("True"), shape.count > 1 else { return Tensor(shape: shape, data: values) }
        // Fortran order is C order of the reversed shape; transpose back.
        let reversed = Tensor(shape: Array(shape.reversed()), data: values)
        return reversed.permuted(Array((0..<shape.count).reversed()))
    }

    static func convert(_ payload: ArraySlice<UInt8>, dtype: String, count: Int) throws -> [Float] {
        guard !dtype.hasPrefix(">") else { throw Error.unsupported("big-endian dtype \(dtype)") }
        let code = dtype.drop(while: { $0 == "<" || $0 == "|" || $0 == "=" })
        let width: Int
        switch code {
        case "f4", "i4", "u4": width = 4
        case "f2", "i2", "u2": width = 2
        case "f8", "i8", "u8": width = 8
        case "u1", "i1", "b1": width = 1
        default: throw Error.unsupported("dtype \(dtype)")
        }
        guard count <= payload.count / width else {
            throw Error.notNPY("data holds \(payload.count) bytes, shape needs \(count) values of \(width) bytes")
        }
        return payload.withUnsafeBytes { raw in
            (0..<count).map { i -> Float in
                let offset = i * width
                switch code {
                case "f4": return raw.loadUnaligned(fromByteOffset: offset, as: Float.self)
                case "f2": return Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
                case "f8": return Float(raw.loadUnaligned(fromByteOffset: offset, as: Double.self))
                case "i4": return Float(raw.loadUnaligned(fromByteOffset: offset, as: Int32.self))
                case "u4": return Float(raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                case "i2": return Float(raw.loadUnaligned(fromByteOffset: offset, as: Int16.self))
                case "u2": return Float(raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                case "i8": return Float(raw.loadUnaligned(fromByteOffset: offset, as: Int64.self))
                case "u8": return Float(raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                case "i1": return Float(raw.loadUnaligned(fromByteOffset: offset, as: Int8.self))
                default: return Float(raw.loadUnaligned(fromByteOffset: offset, as: UInt8.self))
                }
            }
        }
    }

    private static func field(_ name: String, in header: String) throws -> String {
        guard let range = header.range(of: "'\(name)':") else { throw Error.notNPY("header lacks '\(name)'") }
        let rest = header[range.upperBound...].trimmingCharacters(in: .whitespaces)
        if rest.hasPrefix("(") {
            guard let close = rest.firstIndex(of: ")") else { throw Error.notNPY("unterminated shape") }
            return String(rest[...close])
        }
        return String(rest.prefix(while: { $0 != "," && $0 != "}" }))
    }

    /// Encodes a float32 tensor as a version-1.0 .npy file.
    public static func encode(_ tensor: Tensor) -> Data {
        let shapeText = tensor.shape.count == 1 ? "(\(tensor.shape[0]),)"
            : "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        tensor.data.withUnsafeBytes { data.append(contentsOf: $0) }
        return data
    }

    public static func write(_ tensor: Tensor, to url: URL) throws {
        try AtomicFile.write(url) { try encode(tensor).write(to: $0) }
    }
}
