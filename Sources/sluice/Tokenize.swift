import ArgumentParser
import Foundation
import SluiceModels
import SluiceTensor

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a text encoder's token ids: one JSON line {\"text\", \"ids\"} per text, [CLS] … [SEP] included.",
        discussion: "The ids equal Hugging Face's slow BertTokenizer (uncased) on the model's vocab.txt.")

    @OptionGroup var modelOptions: TextModelOptions
    @Option(help: "A UTF-8 file with one text per line (instead of arguments).") var inputFile: String?
    @Option(help: "Keep at most N ids ([CLS] and [SEP] included), as truncation=True.") var maxLength: Int?
    @Argument(help: "Texts to tokenize.") var texts: [String] = []

    func validate() throws {
        if let maxLength, maxLength < 2 { throw CommandError("--max-length must be at least 2") }
    }

    func run() throws {
        let inputs = try readTexts(texts, inputFile: inputFile)
        let (_, location) = try modelOptions.resolve()
        let tokenizer: BertTokenizer
        do { tokenizer = try TextEncoders.tokenizer(at: location) } catch { throw CommandError("\(error)") }
        var lines = ""
        for text in inputs {
            let ids = tokenizer.encode(text, maxLength: maxLength)
            lines += "{\"text\":\(JSONText.quoted(text)),\"ids\":[\(ids.map { "\($0)" }.joined(separator: ","))]}\n"
        }
        FileHandle.standardOutput.write(Data(lines.utf8))
    }
}
