import Foundation

/// Why a checkpoint could not be read (or written). Every case names the file and prints as one line,
/// so the CLI can show it as is.
public enum CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be opened or read at all.
    case unreadable(file: String, reason: String)
    /// The leading bytes match no format Sluice reads.
    case unknownFormat(file: String, detail: String)
    /// The file ends before the data its own headers promise.
    case truncated(file: String, detail: String)
    /// The file is the right format but inconsistent (bad header, out-of-range offsets, bad pickle).
    case malformed(file: String, detail: String)
    /// A tensor is stored in an element type Sluice does not convert.
    case unsupportedDType(file: String, key: String, dtype: String)
    /// A torch pickle refers to a storage the file does not contain.
    case storageMissing(file: String, storage: String)
    /// The pickle uses an opcode the state-dict pickle machine does not implement.
    case unknownOpcode(file: String, opcode: UInt8, offset: Int)
    /// The file parsed, but holds no dict of tensors.
    case noTensors(file: String, detail: String)
    /// `StateDict.tensor(_:)` was asked for a key that is not there.
    case missingKey(key: String, file: String?, available: Int, similar: [String])
    /// Renaming or prefix removal would give two tensors the same key.
    case duplicateKey(key: String, file: String?)
    /// Writing a checkpoint failed.
    case writeFailed(file: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let file, let reason):
            return "\(file): cannot read: \(reason)"
        case .unknownFormat(let file, let detail):
            return "\(file): not a known checkpoint format (\(detail)); "
                + "expected .safetensors, a torch .pth/.pt (zip or legacy), .npz or .npy"
        case .truncated(let file, let detail):
            return "\(file): truncated: \(detail)"
        case .malformed(let file, let detail):
            return "\(file): malformed checkpoint: \(detail)"
        case .unsupportedDType(let file, let key, let dtype):
            return "\(file): tensor '\(key)' has unsupported element type \(dtype)"
        case .storageMissing(let file, let storage):
            return "\(file): the pickle refers to storage '\(storage)', which the file does not contain"
        case .unknownOpcode(let file, let opcode, let offset):
            let printable = (0x21...0x7e).contains(opcode) ? " '\(Character(UnicodeScalar(opcode)))'" : ""
            return "\(file): unsupported pickle opcode 0x\(String(opcode, radix: 16, uppercase: false))"
                + "\(printable) at byte \(offset)"
        case .noTensors(let file, let detail):
            return "\(file): no tensors found: \(detail)"
        case .missingKey(let key, let file, let available, let similar):
            let hint = similar.isEmpty ? "" : "; similar: " + similar.joined(separator: ", ")
            return "\(file ?? "state dict"): no tensor '\(key)' (\(available) tensors\(hint))"
        case .duplicateKey(let key, let file):
            return "\(file ?? "state dict"): two tensors would both be named '\(key)'"
        case .writeFailed(let file, let reason):
            return "\(file): cannot write: \(reason)"
        }
    }
}
