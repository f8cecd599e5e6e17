import SluiceTensor

/// Hands a model family's initialiser its weights, one official key at a time, so that each key and its
/// PyTorch shape are written once, where the layer that uses them is built:
///
///     let blk = weights.scope("stages.0.1")
///     let gamma1 = blk("gamma1", [d])              // key "stages.0.1.gamma1"
///
/// Loading (`init(_:ignoredKeySuffixes:)`) returns the checkpoint's tensors; a missing or mis-shaped one is
/// recorded and replaced by zeros of the declared shape, so construction always completes and `finish`
/// reports every problem at once. Recording (`recording()`) returns zeros and keeps the ordered list of
/// what was asked for: the model's parameter list, proven by construction.
public struct WeightReader {
    /// What every scope of one reader shares.
    final class Log {
        let tensors: [String: Tensor]?
        let ignoredKeySuffixes: [String]
        /// What joins a module path's parts: "." (PyTorch state dicts) or "/" (Flax trees saved as .npz).
        let separator: String
        var declared: [(String, [Int])] = []
        var problems: [String] = []

        init(tensors: [String: Tensor]?, ignoredKeySuffixes: [String], separator: String) {
            self.tensors = tensors
            self.ignoredKeySuffixes = ignoredKeySuffixes
            self.separator = separator
        }
    }

    let log: Log
    /// Key prefix of this scope, with its trailing dot ("" at the root).
    public let prefix: String

    /// Reads `tensors` (official key names, module paths joined by `separator`). Keys ending in one of
    /// `ignoredKeySuffixes` (e.g. `num_batches_tracked`) may be present without being asked for.
    public init(_ tensors: [String: Tensor], ignoredKeySuffixes: [String] = [], separator: String = ".") {
        self.init(log: Log(tensors: tensors, ignoredKeySuffixes: ignoredKeySuffixes, separator: separator), prefix: "")
    }

    init(log: Log, prefix: String) {
        self.log = log
        self.prefix = prefix
    }

    /// A reader that holds no weights: every request returns zeros and is only recorded.
    public static func recording(separator: String = ".") -> WeightReader {
        WeightReader(log: Log(tensors: nil, ignoredKeySuffixes: [], separator: separator), prefix: "")
    }

    /// The ordered (key, PyTorch shape) list of a family, recorded by building it on zeros.
    public static func parameterShapes(separator: String = ".", _ build: (WeightReader) throws -> Any) rethrows
        -> [(String, [Int])] {
        let reader = recording(separator: separator)
        _ = try build(reader)
        return reader.declared
    }

    /// The tensor `prefix + key`, which must have `shape` (the official layout: PyTorch's, or Flax's for
    /// Flax models).
    public func callAsFunction(_ key: String, _ shape: [Int]) -> Tensor {
        let name = prefix + key
        log.declared.append((name, shape))
        guard let tensors = log.tensors else { return Tensor(zeros: shape) }
        guard let tensor = tensors[name] else {
            log.problems.append("missing \(name) \(shape)")
            return Tensor(zeros: shape)
        }
        guard tensor.shape == shape else {
            log.problems.append("\(name) has shape \(tensor.shape), expected \(shape)")
            return Tensor(zeros: shape)
        }
        return tensor
    }

    /// The shape of `key` in the checkpoint, if it is there (nil while recording): for sizes a checkpoint
    /// decides, such as a global filter's grid.
    public func shape(of key: String) -> [Int]? {
        log.tensors?[prefix + key]?.shape
    }

    /// Whether the checkpoint holds any tensor under `module` (always true while recording), for optional
    /// sub-modules such as a training-only auxiliary head.
    public func contains(module: String) -> Bool {
        guard let tensors = log.tensors else { return true }
        let start = prefix + module + log.separator
        return tensors.keys.contains { $0.hasPrefix(start) }
    }

    /// The reader of a sub-module: `scope("stages.0")("gamma1", …)` reads "stages.0.gamma1".
    public func scope(_ module: String) -> WeightReader {
        WeightReader(log: log, prefix: prefix + module + log.separator)
    }

    /// Every (key, shape) asked for so far, in order.
    public var declared: [(String, [Int])] { log.declared }

    /// Every missing and mis-shaped tensor so far, in the order asked for, then every tensor the
    /// checkpoint holds that nobody asked for (sorted).
    public var problems: [String] {
        guard let tensors = log.tensors else { return [] }
        let asked = Set(log.declared.map(\.0))
        let unexpected = tensors.keys.filter { key in
            !asked.contains(key) && !log.ignoredKeySuffixes.contains(where: { key.hasSuffix($0) })
        }.sorted()
        return log.problems + unexpected.map { "unexpected \($0)" }
    }

    /// Throws one `ModelError.weightsMismatch` listing every problem, if there is any.
    public func finish(model: String, source: String = "weights") throws {
        let found = problems
        if !found.isEmpty { throw ModelError.weightsMismatch(model: model, source: source, problems: found) }
    }
}
