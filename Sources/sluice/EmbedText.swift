import ArgumentParser
import Foundation
import SluiceModels
import SluiceTensor

/// Options both text commands share: the model and where its files are.
struct TextModelOptions: ParsableArguments {
    @Option(help: "Text encoder (\(TextEncoders.cards.map(\.name).joined(separator: ", "))).")
    var model: String
    @Option(help: "The model's folder (model.safetensors, vocab.txt, config.json) or checkpoint file (default: SLUICE_MINILM).")
    var weights: String?

    /// The card and the folder or file its files are read from.
    func resolve() throws(CommandError) -> (TextEncoders.Card, URL) {
        let card: TextEncoders.Card
        do { card = try TextEncoders.card(named: model) } catch { throw CommandError("\(error)") }
        guard let path = weights ?? Configuration.current.minilm else {
            throw CommandError("no weights for \(card.name): pass --weights DIR or set SLUICE_MINILM (scripts/setup fetches \(card.source) into .work/weights/all-minilm-l6-v2)")
        }
        guard FileManager.default.fileExists(atPath: path) else { throw CommandError("\(path): no such file or folder") }
        return (card, URL(fileURLWithPath: path))
    }
}

/// The texts of a command: its arguments, or the lines of --input-file (each line one text).
func readTexts(_ arguments: [String], inputFile: String?) throws(CommandError) -> [String] {
    guard let inputFile else {
        guard !arguments.isEmpty else { throw CommandError("give texts as arguments or --input-file FILE") }
        return arguments
    }
    guard arguments.isEmpty else { throw CommandError("give texts as arguments or --input-file, not both") }
    let text: String
    do { text = try String(contentsOfFile: inputFile, encoding: .utf8) } catch {
        throw CommandError("\(inputFile): cannot read UTF-8 text: \(error.localizedDescription)")
    }
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
    if lines.last == "" { lines.removeLast() }
    return lines
}

struct EmbedText: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed-text",
        abstract: "Embed texts with a sentence encoder: one JSON line {\"text\", \"embedding\"} per text.",
        discussion: """
            all_minilm_l6_v2 is sentence-transformers' all-MiniLM-L6-v2: BERT over the WordPiece ids (truncated \
            to its 256 tokens), mean pooling over the tokens, L2 normalisation (384 values).
            """)

    @OptionGroup var modelOptions: TextModelOptions
    @Option(help: "A UTF-8 file with one text per line (instead of arguments).") var inputFile: String?
    @Option(help: "Texts per forward pass.") var batch = 32
    @Argument(help: "Texts to embed.") var texts: [String] = []
    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard batch >= 1 else { throw CommandError("--batch must be at least 1") }
    }

    func run() throws {
        threadOptions.apply()
        let inputs = try readTexts(texts, inputFile: inputFile)
        let (card, location) = try modelOptions.resolve()
        let encoder: SentenceEncoder
        do { encoder = try TextEncoders.load(card, from: location) } catch { throw CommandError("\(error)") }
        let out = FileHandle.standardOutput
        // Batches go out as they are done, so a long input file streams.
        for start in stride(from: 0, to: inputs.count, by: batch) {
            let chunk = Array(inputs[start..<min(inputs.count, start + batch)])
            let embeddings = encoder.embed(chunk, batchSize: batch)
            var lines = ""
            for (row, text) in chunk.enumerated() {
                let values = embeddings.data[(row * encoder.dimension)..<((row + 1) * encoder.dimension)]
                lines += "{\"text\":\(JSONText.quoted(text)),\"embedding\":[\(values.map { "\($0)" }.joined(separator: ","))]}\n"
            }
            out.write(Data(lines.utf8))
        }
    }
}
