import SluiceTensor

/// The element type a tensor had in its file, before Sluice converted it to float32.
/// Raw values are the safetensors dtype names, which every reader maps its own names onto.
public enum CheckpointDType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element in the file.
    public var byteWidth: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

/// The product of a tensor's sizes, or nil when it overflows (hostile headers claim sizes like 2^40).
func checkedElementCount(_ shape: [Int]) -> Int? {
    var count = 1
    for size in shape {
        guard size >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: size)
        if overflow { return nil }
        count = product
    }
    return count
}

/// The most elements one checkpoint tensor may have once materialised as float32: 2^28 (1 GiB). The
/// largest real weight here is 33 M elements (HorNet-L's 21 841-class head); a file may store a small
/// storage behind a broadcast view (stride 0) that would otherwise expand to any size.
public let maxCheckpointTensorElements = 1 << 28

/// A strided view into a flat storage of elements, as torch describes tensors: element offset,
/// shape and per-axis strides (all in elements).
struct StridedView {
    var offset: Int
    var shape: [Int]
    var strides: [Int]

    /// Elements of the view once materialised; nil when the shape's product overflows.
    var elementCount: Int? { checkedElementCount(shape) }

    /// The number of storage elements the view reaches (its highest index + 1), or nil when the
    /// description itself is invalid (negative sizes, strides or offset, rank mismatch, overflow).
    var requiredStorageCount: Int? {
        guard shape.count == strides.count, offset >= 0,
              shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else { return nil }
        if shape.contains(0) { return offset }
        var last = offset
        for (size, stride) in zip(shape, strides) {
            let (span, spanOverflow) = (size - 1).multipliedReportingOverflow(by: stride)
            let (sum, sumOverflow) = last.addingReportingOverflow(span)
            guard !spanOverflow, !sumOverflow else { return nil }
            last = sum
        }
        return last + 1
    }

    /// True when the elements are laid out densely in row-major order (a plain memcpy/convert suffices).
    var isContiguous: Bool {
        var expected = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] != 1 {
            if strides[axis] != expected { return false }
            expected *= shape[axis]
        }
        return true
    }
}

/// Converting stored elements of any `CheckpointDType` into float32 tensors, honouring strides.
enum ElementConversion {
    /// Builds a float32 tensor from `view` of `storage` (a buffer of `dtype` elements). The caller has
    /// checked `view.requiredStorageCount` against the storage size.
    static func makeTensor(dtype: CheckpointDType, storage: UnsafeRawPointer, view: StridedView) -> Tensor {
        switch dtype {
        case .f32: return gather(Float32Element.self, storage, view)
        case .f16: return gather(Float16Element.self, storage, view)
        case .bf16: return gather(BFloat16Element.self, storage, view)
        case .f64: return gather(Float64Element.self, storage, view)
        case .i64: return gather(IntegerElement<Int64>.self, storage, view)
        case .i32: return gather(IntegerElement<Int32>.self, storage, view)
        case .i16: return gather(IntegerElement<Int16>.self, storage, view)
        case .i8: return gather(IntegerElement<Int8>.self, storage, view)
        case .u64: return gather(IntegerElement<UInt64>.self, storage, view)
        case .u32: return gather(IntegerElement<UInt32>.self, storage, view)
        case .u16: return gather(IntegerElement<UInt16>.self, storage, view)
        case .u8, .bool: return gather(IntegerElement<UInt8>.self, storage, view)
        }
    }

    /// Contiguous case: `count` elements starting at element `offset`.
    static func makeTensor(dtype: CheckpointDType, storage: UnsafeRawPointer, offset: Int, shape: [Int]) -> Tensor {
        var strides = [Int](repeating: 1, count: shape.count)
        for axis in stride(from: shape.count - 2, through: 0, by: -1) {
            strides[axis] = strides[axis + 1] * shape[axis + 1]
        }
        return makeTensor(dtype: dtype, storage: storage, view: StridedView(offset: offset, shape: shape, strides: strides))
    }

    /// One generic loop per element type, specialised by the compiler, so the inner loop has no
    /// per-element dtype switch. The innermost axis is walked directly; the outer axes by an odometer.
    private static func gather<Element: StoredElement>(_: Element.Type, _ storage: UnsafeRawPointer,
                                                       _ view: StridedView) -> Tensor {
        let shape = view.shape
        return Tensor(uninitialized: shape) { out in
            guard let destination = out.baseAddress, !out.isEmpty else { return }
            if view.isContiguous {
                Element.convert(storage + view.offset * Element.width, count: out.count, into: destination)
                return
            }
            let rank = shape.count
            let innerCount = shape[rank - 1], innerStride = view.strides[rank - 1]
            var index = [Int](repeating: 0, count: rank)
            var rowStart = view.offset
            var written = 0
            while written < out.count {
                var element = rowStart
                for column in 0..<innerCount {
                    destination[written + column] = Element.load(storage, element)
                    element += innerStride
                }
                written += innerCount
                var axis = rank - 2
                while axis >= 0 {
                    index[axis] += 1
                    rowStart += view.strides[axis]
                    if index[axis] < shape[axis] { break }
                    rowStart -= view.strides[axis] * shape[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }
}

/// How one stored element type turns into Float. Loads are unaligned: legacy torch files and
/// safetensors headers put data at arbitrary byte offsets.
private protocol StoredElement {
    static var width: Int { get }
    static func load(_ base: UnsafeRawPointer, _ index: Int) -> Float
    static func convert(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>)
}

extension StoredElement {
    static func convert(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        for i in 0..<count { destination[i] = load(source, i) }
    }
}

private enum Float32Element: StoredElement {
    static var width: Int { 4 }
    static func load(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        base.loadUnaligned(fromByteOffset: index &* 4, as: Float.self)
    }
    static func convert(_ source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
    }
}

private enum Float16Element: StoredElement {
    static var width: Int { 2 }
    static func load(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self)))
    }
}

private enum BFloat16Element: StoredElement {
    static var width: Int { 2 }
    // bfloat16 is the top half of a float32, so widening is a shift.
    static func load(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: index &* 2, as: UInt16.self)) << 16)
    }
}

private enum Float64Element: StoredElement {
    static var width: Int { 8 }
    static func load(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        Float(base.loadUnaligned(fromByteOffset: index &* 8, as: Double.self))
    }
}

private enum IntegerElement<Stored: FixedWidthInteger>: StoredElement {
    static var width: Int { MemoryLayout<Stored>.size }
    static func load(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        Float(base.loadUnaligned(fromByteOffset: index &* MemoryLayout<Stored>.size, as: Stored.self))
    }
}
