import Foundation
import SluiceTensor
import SluiceModels

/// Classifies a list of image files: decodes and preprocesses a batch in parallel, runs the model on
/// the batch, and writes one record per input in input order. A file that fails to decode becomes a
/// record with `error` set; the run goes on.
public final class ClassifyRunner {
    public struct Summary: Sendable {
        public var items = 0
        public var failures = 0
        public var seconds = 0.0
        public var imagesPerSecond: Double { seconds > 0 ? Double(items) / seconds : 0 }
    }

    public let card: ModelCard
    public let classifier: any ImageClassifier
    public let topK: Int
    public let batchSize: Int
    let loader: ImageLoader

    public init(card: ModelCard, classifier: any ImageClassifier, topK: Int, batchSize: Int) {
        self.card = card
        self.classifier = classifier
        self.topK = topK
        self.batchSize = max(1, batchSize)
        loader = ImageLoader(card.preprocessing)
    }

    public func run(_ items: [InputItem], sink: RecordSink, progress: ProgressReporter? = nil) throws -> Summary {
        var summary = Summary()
        let start = Date()
        let side = card.preprocessing.cropSize
        let slot = side * side * 3
        var batch = [Float](repeating: 0, count: batchSize * slot)
        for chunkStart in stride(from: 0, to: items.count, by: batchSize) {
            let chunk = Array(items[chunkStart..<min(chunkStart + batchSize, items.count)])
            var errors = [String?](repeating: nil, count: chunk.count)
            // Decode in parallel straight into the batch; a slot is compacted away if its file fails.
            batch.withUnsafeMutableBufferPointer { buffer in
                let base = UnsafeSendable(buffer.baseAddress!)
                let results = UnsafeSendable(UnsafeMutablePointer<String?>.allocate(capacity: chunk.count))
                results.value.initialize(repeating: nil, count: chunk.count)
                let loader = self.loader
                DispatchQueue.concurrentPerform(iterations: chunk.count) { i in
                    if let listingError = chunk[i].listingError {
                        results.value[i] = "\(chunk[i].path): \(listingError)"
                        return
                    }
                    do {
                        try loader.load(path: chunk[i].path, into: base.value + i * slot)
                    } catch {
                        results.value[i] = "\(error)"
                    }
                }
                for i in 0..<chunk.count { errors[i] = results.value[i] }
                results.value.deinitialize(count: chunk.count)
                results.value.deallocate()
            }
            let good = (0..<chunk.count).filter { errors[$0] == nil }
            var predictions: [[Prediction]] = []
            if !good.isEmpty {
                let input = Tensor(uninitialized: [good.count, side, side, 3]) { out in
                    batch.withUnsafeBufferPointer { src in
                        for (row, index) in good.enumerated() {
                            (out.baseAddress! + row * slot).update(from: src.baseAddress! + index * slot, count: slot)
                        }
                    }
                }
                let probabilities = Softmax.lastAxis(classifier(input))
                predictions = probabilities.topK(topK).map { row in
                    row.map { Prediction(index: $0.index, label: card.labels.label($0.index), score: $0.value) }
                }
            }
            var next = 0
            for (i, item) in chunk.enumerated() {
                var record = ResultRecord(source: item.path, model: card.name)
                if let error = errors[i] {
                    record.error = error
                    summary.failures += 1
                } else {
                    record.topK = predictions[next]
                    next += 1
                }
                try sink.write(record)
                summary.items += 1
            }
            progress?.update(done: summary.items, failed: summary.failures)
        }
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }
}
