import Foundation
import SluiceTensor

/// `torch.save` files, read without Python:
/// - zip format (torch >= 1.6): `<folder>/data.pkl` plus one `<folder>/data/<key>` entry per storage;
/// - legacy format (torch < 1.6, or `_use_new_zipfile_serialization=False`): pickles back to back —
///   magic number, protocol version, system info, the object, the list of storage keys — followed by
///   each storage as an 8-byte little-endian element count and its raw bytes.
/// In both, the object pickle names storages through persistent ids
/// `('storage', StorageType, key, location, numel[, view_metadata])` and tensors are
/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)` calls, which `PickleMachine` records.
enum TorchCheckpoint {
    /// The legacy format's first pickle: torch.serialization.MAGIC_NUMBER, 0x1950a86a20f9469cfc6c.
    static let legacyMagic: [UInt8] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]
    static let legacyProtocolVersion = 1001

    // MARK: - Zip format

    static func loadZip(_ zip: CheckpointZip, url: URL) throws -> StateDict {
        let file = url.path
        // The top folder is named after the file torch saved to ("archive" in newer versions).
        guard let picklePath = zip.entries.map(\.path).filter({ $0.hasSuffix("data.pkl") })
            .min(by: { $0.count < $1.count }), let pickleEntry = zip[picklePath] else {
            throw CheckpointError.malformed(file: file, detail: "zip archive has no data.pkl (not a torch checkpoint)")
        }
        let folder = String(picklePath.dropLast("data.pkl".count))
        if let byteOrderEntry = zip[folder + "byteorder"],
           String(decoding: try zip.contents(of: byteOrderEntry), as: UTF8.self).hasPrefix("big") {
            throw CheckpointError.malformed(file: file, detail: "big-endian torch checkpoint (not supported)")
        }

        let pickleData = try zip.contents(of: pickleEntry)
        let arena = PickleArena()
        defer { arena.release() }
        let root = try pickleData.withUnsafeBytes { raw in
            var machine = PickleMachine(bytes: raw, file: "\(file) [\(picklePath)]", arena: arena)
            machine.persistentLoad = { try storageReference(from: $0, file: file) }
            return try machine.load()
        }
        let found = try tensorReferences(in: root, url: url)

        // Storages shared by several tensors (views, tied weights) are extracted once and released
        // after their last use.
        var remainingUses: [String: Int] = [:]
        for (_, reference) in found.tensors { remainingUses[reference.storage.key, default: 0] += 1 }
        var extracted: [String: Data] = [:]
        var stateDict = StateDict(source: url)
        stateDict.notes = found.notes
        for (key, reference) in found.tensors {
            let storageKey = reference.storage.key
            let storage: Data
            if let cached = extracted[storageKey] {
                storage = cached
            } else {
                guard let entry = zip[folder + "data/" + storageKey] else {
                    throw CheckpointError.storageMissing(file: file, storage: folder + "data/" + storageKey)
                }
                storage = try zip.contents(of: entry, checkCRC: false)
                extracted[storageKey] = storage
            }
            remainingUses[storageKey]! -= 1
            if remainingUses[storageKey] == 0 { extracted[storageKey] = nil }
            let (tensor, dtype) = try storage.withUnsafeBytes { raw in
                try makeTensor(key: key, reference: reference, storage: raw, file: file)
            }
            stateDict.set(tensor, forKey: key, dtype: dtype)
        }
        return stateDict
    }

    // MARK: - Legacy format

    static func loadLegacy(_ data: Data, url: URL) throws -> StateDict {
        let file = url.path
        let arena = PickleArena()
        defer { arena.release() }
        return try data.withUnsafeBytes { raw in
            var machine = PickleMachine(bytes: raw, file: file, arena: arena)
            guard case .bigInt(let magic) = try machine.load(), magic == legacyMagic else {
                throw CheckpointError.malformed(file: file, detail: "legacy torch magic number missing")
            }
            guard case .int(let version) = try machine.load(), version == legacyProtocolVersion else {
                throw CheckpointError.malformed(file: file, detail: "unknown legacy torch protocol version")
            }
            if case .dict(let systemInfo) = try machine.load(), case .bool(false)? = systemInfo["little_endian"] {
                throw CheckpointError.malformed(file: file, detail: "big-endian torch checkpoint (not supported)")
            }

            // Every storage the pickle names is recorded, including ones only non-tensor objects use
            // (optimizer state): the data section lists them all and we must know each one's width.
            var storages: [String: TorchStorageReference] = [:]
            machine.persistentLoad = { persistentID in
                let value = try storageReference(from: persistentID, file: file)
                if case .storage(let reference) = value, storages[reference.key] == nil {
                    storages[reference.key] = reference
                }
                return value
            }
            let root = try machine.load()
            machine.persistentLoad = { _ in .none }
            guard let storageKeys = try machine.load().sequence?.compactMap(textValue) else {
                throw CheckpointError.malformed(file: file, detail: "legacy storage key list missing")
            }

            var storageRanges: [String: Range<Int>] = [:]
            var offset = machine.position
            for storageKey in storageKeys {
                guard let reference = storages[storageKey] else {
                    throw CheckpointError.malformed(file: file, detail: "storage '\(storageKey)' listed but never described")
                }
                guard raw.count - offset >= 8 else {
                    throw CheckpointError.truncated(file: file, detail: "storage '\(storageKey)' size field at byte "
                        + "\(offset) is past the end (\(raw.count) bytes)")
                }
                let elementCount = Int(truncatingIfNeeded: Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
                guard let elementWidth = reference.elementWidth else {
                    throw CheckpointError.unsupportedDType(file: file, key: "storage " + storageKey, dtype: reference.typeName)
                }
                let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: elementWidth)
                guard elementCount >= 0, !overflow else {
                    throw CheckpointError.malformed(file: file, detail: "storage '\(storageKey)' has size \(elementCount)")
                }
                let start = offset + 8
                guard raw.count - start >= byteCount else {
                    throw CheckpointError.truncated(file: file, detail: "storage '\(storageKey)' needs \(byteCount) bytes "
                        + "at byte \(start), the file has \(raw.count - start) left")
                }
                storageRanges[storageKey] = start..<start + byteCount
                offset = start + byteCount
            }

            let found = try tensorReferences(in: root, url: url)
            var stateDict = StateDict(source: url)
            stateDict.notes = found.notes
            for (key, reference) in found.tensors {
                guard let range = storageRanges[reference.storage.key] else {
                    throw CheckpointError.storageMissing(file: file, storage: reference.storage.key)
                }
                let (tensor, dtype) = try makeTensor(key: key, reference: reference,
                                                     storage: UnsafeRawBufferPointer(rebasing: raw[range]), file: file)
                stateDict.set(tensor, forKey: key, dtype: dtype)
            }
            return stateDict
        }
    }

    // MARK: - Shared

    /// Storage class names and their element types; unsupported ones keep their width so legacy files
    /// holding them (in optimizer state, say) can still be stepped over.
    static func storageType(named name: String) -> (dtype: CheckpointDType?, width: Int)? {
        switch name {
        case "FloatStorage": return (.f32, 4)
        case "HalfStorage": return (.f16, 2)
        case "BFloat16Storage": return (.bf16, 2)
        case "DoubleStorage": return (.f64, 8)
        case "LongStorage": return (.i64, 8)
        case "IntStorage": return (.i32, 4)
        case "ShortStorage": return (.i16, 2)
        case "CharStorage": return (.i8, 1)
        case "ByteStorage": return (.u8, 1)
        case "BoolStorage": return (.bool, 1)
        case "ComplexFloatStorage", "QInt32Storage": return (nil, name.hasPrefix("Complex") ? 8 : 4)
        case "ComplexDoubleStorage": return (nil, 16)
        case "QInt8Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage": return (nil, 1)
        default: return nil
        }
    }

    /// `('storage', torch.FloatStorage, key, location, numel[, view_metadata])` -> a storage reference.
    /// The storage class may come from `torch` or `torch.cuda` (GPU-saved files); we only read bytes.
    private static func storageReference(from persistentID: PickleValue, file: String) throws -> PickleValue {
        guard let fields = persistentID.sequence, fields.count >= 5, textValue(fields[0]) == "storage",
              case .global(_, let typeName) = fields[1], let key = textValue(fields[2]),
              let elementCount = fields[4].int else {
            throw CheckpointError.malformed(file: file, detail: "unexpected persistent id ("
                + (persistentID.sequence ?? [persistentID]).map(\.kindDescription).joined(separator: ", ") + ")")
        }
        let type = storageType(named: typeName)
        // Legacy view_metadata (view_key, offset, size): the storage is a window into the root storage.
        var viewOffset = 0
        if fields.count >= 6, let view = fields[5].sequence, view.count >= 2, let offset = view[1].int {
            viewOffset = offset
        }
        return .storage(TorchStorageReference(key: key, typeName: typeName, dtype: type?.dtype,
                                              elementWidth: type?.width, elementCount: elementCount,
                                              viewOffset: viewOffset))
    }

    private static func textValue(_ value: PickleValue) -> String? {
        switch value {
        case .string(let text): return text
        case .bytes(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// Finds the dict of tensors: the top-level dict itself, or a dict under one of the usual wrapper
    /// keys of training checkpoints. Non-tensor values are skipped and listed in the notes.
    private static func tensorReferences(in root: PickleValue, url: URL) throws
        -> (tensors: [(String, TorchTensorReference)], notes: [String]) {
        let file = url.path
        switch root {
        case .tensor(let reference):
            return ([(url.deletingPathExtension().lastPathComponent, reference)], ["the file holds a single tensor"])
        case .object(let object):
            throw CheckpointError.noTensors(file: file, detail: "the file pickles a whole \(object.typeName) object, "
                + "not a state dict; save model.state_dict() instead")
        case .dict(let top):
            var notes: [String] = []
            var stateDict = top
            if !containsTensors(top) {
                let wrapper = ["model", "state_dict", "model_state", "module"].first { name in
                    if case .dict(let inner)? = top[name] { return containsTensors(inner) }
                    return false
                }
                guard let wrapper, case .dict(let inner)? = top[wrapper] else {
                    let keys = top.entries.prefix(12).map { "\(textValue($0.key) ?? $0.key.kindDescription) "
                        + "(\($0.value.kindDescription))" }
                    throw CheckpointError.noTensors(file: file, detail: "top-level dict with keys "
                        + keys.joined(separator: ", ") + (top.entries.count > 12 ? ", …" : "")
                        + " holds no tensors and none of model/state_dict/model_state/module is a dict of tensors")
                }
                notes.append("tensors read from the checkpoint's '\(wrapper)' entry")
                stateDict = inner
            }
            var tensors: [(String, TorchTensorReference)] = []
            var skipped: [String] = []
            for (key, value) in stateDict.entries {
                if case .tensor(let reference) = value, let name = textValue(key) {
                    tensors.append((name, reference))
                } else {
                    skipped.append("\(textValue(key) ?? key.kindDescription) (\(value.kindDescription))")
                }
            }
            if !skipped.isEmpty {
                notes.append("skipped \(skipped.count) non-tensor entr\(skipped.count == 1 ? "y" : "ies"): "
                    + skipped.prefix(10).joined(separator: ", ") + (skipped.count > 10 ? ", …" : ""))
            }
            return (tensors, notes)
        default:
            throw CheckpointError.noTensors(file: file, detail: "the top-level object is a \(root.kindDescription), "
                + "not a dict of tensors")
        }
    }

    private static func containsTensors(_ dict: PickleDict) -> Bool {
        dict.entries.contains { if case .tensor = $0.value { return true } else { return false } }
    }

    /// Converts one tensor's strided view of its storage bytes to float32, after checking it fits.
    private static func makeTensor(key: String, reference: TorchTensorReference, storage: UnsafeRawBufferPointer,
                                   file: String) throws -> (Tensor, CheckpointDType) {
        guard let dtype = reference.storage.dtype else {
            throw CheckpointError.unsupportedDType(file: file, key: key, dtype: reference.storage.typeName)
        }
        let view = reference.view
        guard let required = view.requiredStorageCount else {
            throw CheckpointError.malformed(file: file, detail: "tensor '\(key)' has an invalid layout: shape "
                + "\(view.shape), stride \(view.strides), offset \(view.offset)")
        }
        let available = storage.count / dtype.byteWidth
        guard required <= available else {
            throw CheckpointError.malformed(file: file, detail: "tensor '\(key)' (shape \(view.shape), stride "
                + "\(view.strides), offset \(view.offset)) needs \(required) elements of storage "
                + "'\(reference.storage.key)', which holds \(available)")
        }
        guard let count = view.elementCount, count <= maxCheckpointTensorElements else {
            throw CheckpointError.malformed(file: file, detail: "tensor '\(key)' (shape \(view.shape)) has "
                + "\(view.elementCount.map(String.init) ?? "too many") elements, more than the limit of "
                + "\(maxCheckpointTensorElements) (1 GiB as float32)")
        }
        guard count > 0, let base = storage.baseAddress else {
            return (Tensor(zeros: view.shape), dtype)
        }
        return (ElementConversion.makeTensor(dtype: dtype, storage: base, view: view), dtype)
    }
}
