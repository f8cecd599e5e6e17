import Foundation
import SluiceTensor

/// Named float32 tensors in file order, as every checkpoint format is read into. Tensors stored as
/// F16/BF16/F64/integers are converted to float32; `dtypes` keeps what each one was in the file.
public struct StateDict: Sendable, Equatable {
    /// Keys in the order the file lists them.
    public private(set) var keys: [String] = []
    public private(set) var tensors: [String: Tensor] = [:]
    /// The element type each tensor had in the file.
    public private(set) var dtypes: [String: CheckpointDType] = [:]
    /// Free-form string metadata (safetensors `__metadata__`).
    public var metadata: [String: String] = [:]
    /// What the reader did that a user may want to know: which wrapper key held the tensors,
    /// which non-tensor entries were skipped.
    public var notes: [String] = []
    /// The file it was read from, for error messages.
    public var source: URL?

    public init(source: URL? = nil) {
        self.source = source
    }

    /// Float32 tensors in the given order (keys must be unique; a repeated key replaces the earlier tensor).
    public init(_ orderedTensors: [(String, Tensor)], source: URL? = nil) {
        self.source = source
        for (key, tensor) in orderedTensors { set(tensor, forKey: key) }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public func contains(_ key: String) -> Bool { tensors[key] != nil }

    public subscript(key: String) -> Tensor? { tensors[key] }

    /// The tensor stored under `key`, or a `CheckpointError.missingKey` naming the file and similar keys.
    public func tensor(_ key: String) throws -> Tensor {
        if let tensor = tensors[key] { return tensor }
        throw CheckpointError.missingKey(key: key, file: source?.path, available: count,
                                         similar: similarKeys(to: key))
    }

    /// (key, tensor) pairs in file order.
    public var orderedTensors: [(key: String, tensor: Tensor)] {
        keys.map { ($0, tensors[$0]!) }
    }

    /// Adds a tensor at the end, or replaces the tensor already stored under `key` in place.
    public mutating func set(_ tensor: Tensor, forKey key: String, dtype: CheckpointDType = .f32) {
        if tensors.updateValue(tensor, forKey: key) == nil { keys.append(key) }
        dtypes[key] = dtype
    }

    @discardableResult
    public mutating func removeValue(forKey key: String) -> Tensor? {
        guard let removed = tensors.removeValue(forKey: key) else { return nil }
        keys.removeAll { $0 == key }
        dtypes[key] = nil
        return removed
    }

    /// Strips `prefix` from every key that has it (e.g. "module." from DataParallel checkpoints,
    /// "backbone." from a detector). Keys without the prefix are kept as they are, or dropped when
    /// `keepingUnprefixed` is false (selecting a sub-module's weights). Throws on a key collision.
    public func removingPrefix(_ prefix: String, keepingUnprefixed: Bool = true) throws -> StateDict {
        try renamingKeys { key in
            key.hasPrefix(prefix) ? String(key.dropFirst(prefix.count)) : (keepingUnprefixed ? key : nil)
        }
    }

    /// Renames the keys listed in `mapping`; other keys keep their names. Throws on a key collision.
    public func renamingKeys(_ mapping: [String: String]) throws -> StateDict {
        try renamingKeys { mapping[$0] ?? $0 }
    }

    /// Renames every key through `transform`; returning nil drops the tensor. Order is kept.
    /// Throws `CheckpointError.duplicateKey` if two tensors would get the same name.
    public func renamingKeys(_ transform: (String) throws -> String?) throws -> StateDict {
        var renamed = StateDict(source: source)
        renamed.metadata = metadata
        renamed.notes = notes
        for key in keys {
            guard let newKey = try transform(key) else { continue }
            guard !renamed.contains(newKey) else { throw CheckpointError.duplicateKey(key: newKey, file: source?.path) }
            renamed.set(tensors[key]!, forKey: newKey, dtype: dtypes[key] ?? .f32)
        }
        return renamed
    }

    /// Up to three keys that look like what was meant, for "did you mean" hints: the same key under
    /// another prefix ("module.fc.weight" for "fc.weight" or the reverse), else the longest shared start.
    private func similarKeys(to key: String) -> [String] {
        let prefixed = keys.filter { $0.hasSuffix("." + key) || key.hasSuffix("." + $0) }
        if !prefixed.isEmpty { return Array(prefixed.prefix(3)) }
        func sharedPrefixLength(_ a: String, _ b: String) -> Int {
            zip(a.utf8, b.utf8).prefix(while: { $0 == $1 }).count
        }
        let scored = keys.map { (key: $0, score: sharedPrefixLength($0, key)) }
        let best = scored.map(\.score).max() ?? 0
        guard best >= 3 else { return [] }
        return Array(scored.filter { $0.score == best }.map(\.key).prefix(3))
    }
}
