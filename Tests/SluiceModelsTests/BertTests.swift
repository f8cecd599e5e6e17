import Foundation
import XCTest
import SluiceModels
import SluiceTensor
import SluiceTestSupport

/// Parity of the BERT text encoder with Hugging Face: token ids against the slow `BertTokenizer` on a
/// corpus of edge cases and real sentences, and all-MiniLM-L6-v2 sentence embeddings against
/// sentence-transformers on the real weights (fixtures: scripts/reference/bert.py).
final class BertTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("bert")

    struct TokenCase: Decodable { var text: String; var ids: [Int32] }
    struct PaddedCase: Decodable { var text: String; var ids: [Int32]; var mask: [Int32] }
    struct Padded: Decodable { var max_length: Int; var cases: [PaddedCase] }

    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(contentsOf: fixtures.appendingPathComponent(name)))
    }

    static func tokenizer() throws -> BertTokenizer {
        try BertTokenizer(contentsOf: fixtures.appendingPathComponent("vocab.txt"))
    }

    /// all-MiniLM-L6-v2's folder: SLUICE_MINILM, else where scripts/setup puts it.
    static func weights() throws -> URL {
        let folder = ProcessInfo.processInfo.environment["SLUICE_MINILM"].map { URL(fileURLWithPath: $0) }
            ?? TestResources.repository.appendingPathComponent(".work/weights/all-minilm-l6-v2")
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("model.safetensors").path) else {
            throw TestResources.missing("all-MiniLM-L6-v2 weights not at \(folder.path) (scripts/setup fetches them; or set SLUICE_MINILM)")
        }
        return folder
    }

    /// The corpus (edge cases and 50 sentences) and 300 seeded random texts over many scripts.
    func testTokenIDsMatchHuggingFaceOnCorpus() throws {
        let tokenizer = try Self.tokenizer()
        for (file, expectedCount) in [("tokens.json", 88), ("fuzz.json", 300)] {
            let cases = try Self.decode([TokenCase].self, file)
            XCTAssertEqual(cases.count, expectedCount, file)
            var mismatches: [String] = []
            for item in cases {
                let ids = tokenizer.encode(item.text)
                if ids != item.ids {
                    mismatches.append("\(item.text.debugDescription): \(ids) expected \(item.ids)")
                }
            }
            print("BERT tokenizer parity (\(file)): \(cases.count - mismatches.count) of \(cases.count) texts equal")
            XCTAssertEqual(mismatches, [], "\(file): \(mismatches.count) of \(cases.count) texts tokenised differently")
        }
    }

    func testTruncationAndPaddingMatchHuggingFace() throws {
        let tokenizer = try Self.tokenizer()
        let padded = try Self.decode(Padded.self, "padded.json")
        let batch = tokenizer.batch(padded.cases.map(\.text), maxLength: padded.max_length, padToMaxLength: true)
        XCTAssertEqual(batch.count, padded.cases.count)
        XCTAssertEqual(batch.length, padded.max_length)
        for (row, item) in padded.cases.enumerated() {
            let range = (row * batch.length)..<((row + 1) * batch.length)
            XCTAssertEqual(Array(batch.ids[range]), item.ids, item.text)
            XCTAssertEqual(Array(batch.attentionMask[range]), item.mask, item.text)
        }
        // Some cases are truncated (ending in [SEP] at the last place), some padded.
        XCTAssertTrue(padded.cases.contains { $0.mask.allSatisfy { $0 == 1 } && $0.ids.last == tokenizer.sepID })
        XCTAssertTrue(padded.cases.contains { $0.mask.last == 0 })
    }

    func testPaddingToTheLongestTextAndTruncationLengths() throws {
        let tokenizer = try Self.tokenizer()
        let texts = ["", "hello", "the quick brown fox jumps over the lazy dog"]
        let lengths = texts.map { tokenizer.encode($0).count }
        XCTAssertEqual(lengths, [2, 3, 11])
        let batch = tokenizer.batch(texts, maxLength: 512)
        XCTAssertEqual(batch.length, 11)
        for (row, length) in lengths.enumerated() {
            let mask = batch.attentionMask[(row * 11)..<((row + 1) * 11)]
            XCTAssertEqual(Array(mask), Array(repeating: 1, count: length) + Array(repeating: 0, count: 11 - length))
            let ids = batch.ids[(row * 11)..<((row + 1) * 11)]
            XCTAssertEqual(ids.first, tokenizer.clsID)
            XCTAssertEqual(ids[row * 11 + length - 1], tokenizer.sepID)
            XCTAssertTrue(ids.dropFirst(length).allSatisfy { $0 == tokenizer.padID })
        }
        let truncated = tokenizer.encode(texts[2], maxLength: 5)
        XCTAssertEqual(truncated, Array(tokenizer.encode(texts[2]).prefix(4)) + [tokenizer.sepID])
        XCTAssertEqual(tokenizer.batch(texts, maxLength: 5).length, 5)
        XCTAssertEqual(tokenizer.encode("", maxLength: 2), [tokenizer.clsID, tokenizer.sepID])
    }

    func testEmbeddingsMatchSentenceTransformersOnRealWeights() throws {
        let folder = try Self.weights()
        let encoder = try TextEncoders.load(try TextEncoders.card(named: "all_minilm_l6_v2"), from: folder)
        XCTAssertEqual(encoder.model.configuration, .allMiniLML6V2)
        XCTAssertEqual(encoder.maxSequenceLength, 256)
        XCTAssertTrue(encoder.normalize)
        let sentences = try Self.decode([String].self, "sentences.json")
        let expected = try NPY.read(contentsOf: Self.fixtures.appendingPathComponent("embeddings.npy"))
        XCTAssertEqual(expected.shape, [50, 384])
        defer { Parallel.configure(threads: nil) }
        for threads in [1, 2] {
            Parallel.configure(threads: threads)
            // Batches of 16 padded to their longest, as the reference encoded them.
            let embeddings = encoder.embed(sentences, batchSize: 16)
            let error = Tensor.maxRelativeError(embeddings, expected)
            print("all-MiniLM-L6-v2 parity (\(threads) thread(s)): max relative error \(error) on \(sentences.count) sentences")
            XCTAssertLessThanOrEqual(error, 1e-4, "\(threads) thread(s): max relative error \(error)")
        }
        // One sentence alone (no padding) gives the same embedding as in a padded batch.
        let alone = encoder.embed([sentences[3]], batchSize: 1)
        let reference = Tensor(shape: [1, 384], data: Array(expected.data[(3 * 384)..<(4 * 384)]))
        XCTAssertLessThanOrEqual(Tensor.maxRelativeError(alone, reference), 1e-4)
        // Unit length (the Normalize module).
        let norm = alone.data.reduce(0) { $0 + $1 * $1 }.squareRoot()
        XCTAssertEqual(norm, 1, accuracy: 1e-5)
    }

    func testCheckpointUnderBertOrSentenceTransformerPrefixLoadsTheSameModel() throws {
        let folder = try Self.weights()
        let plain = try Checkpoint.load(folder.appendingPathComponent("model.safetensors"))
        let tokenizer = try TextEncoders.tokenizer(at: folder)
        let batch = tokenizer.batch(["A prefix changes nothing.", "Two texts"], maxLength: 32)
        let reference = try BertModel(stateDict: plain, configuration: .allMiniLML6V2).lastHiddenStates(batch)
        for prefix in ["bert.", "0.auto_model."] {
            var renamed = try plain.renamingKeys { prefix + $0 }
            // A head beside the encoder (BertForPreTraining's `cls.`) is not part of BertModel.
            renamed.set(Tensor(zeros: [2]), forKey: "cls.predictions.bias")
            let model = try BertModel(stateDict: renamed, configuration: .allMiniLML6V2)
            XCTAssertEqual(model.lastHiddenStates(batch), reference, prefix)
        }
        // Without config.json the shapes give everything but the head count (BERT's 64-wide heads).
        let inferred = BertConfiguration.inferred(from: plain.tensors)
        XCTAssertEqual(inferred?.hiddenSize, 384)
        XCTAssertEqual(inferred?.numHiddenLayers, 6)
        XCTAssertEqual(inferred?.intermediateSize, 1536)
        XCTAssertEqual(inferred?.numAttentionHeads, 6)
    }

    func testMismatchedCheckpointIsReportedByKey() throws {
        let folder = try Self.weights()
        var dict = try Checkpoint.load(folder.appendingPathComponent("model.safetensors"))
        dict.removeValue(forKey: "encoder.layer.2.output.dense.bias")
        XCTAssertThrowsError(try BertModel(stateDict: dict, configuration: .allMiniLML6V2)) { error in
            XCTAssertTrue("\(error)".contains("missing encoder.layer.2.output.dense.bias [384]"), "\(error)")
        }
    }
}
