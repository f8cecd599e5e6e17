import Foundation
import SluiceTensor
import SluiceModels

/// Classifies a list of image files: decodes and preprocesses the next batch in the background while
/// the model runs on the current one, and writes one record per input in input order. A file that
/// fails to decode becomes a record with `error` set; the run goes on.
public final class ClassifyRunner {
    public struct Summary: Sendable {
        public var items = 0
        public var failures = 0
        public var seconds = 0.0
        /// The run stopped early because `shouldStop` said so.
        public var stopped = false
        public var imagesPerSecond: Double { seconds > 0 ? Double(items) / seconds : 0 }
    }

    public let card: ModelCard
    public let classifier: any ImageClassifier
    public let topK: Int
    public let batchSize: Int
    let loader: ImageLoader
    private let decodeQueue = DispatchQueue(label: "sluice.classify.decode")

    public init(card: ModelCard, classifier: any ImageClassifier, topK: Int, batchSize: Int) {
        self.card = card
        self.classifier = classifier
        self.topK = topK
        self.batchSize = max(1, batchSize)
        loader = ImageLoader(card.preprocessing)
    }

    /// One batch of inputs being decoded into model input; `ready` is signalled when it is complete.
    final class DecodedBatch: @unchecked Sendable {
        let items: [InputItem]
        let slot: Int
        var values: [Float]
        var errors: [String?]
        let ready = DispatchSemaphore(value: 0)

        init(items: [InputItem], slot: Int) {
            self.items = items
            self.slot = slot
            values = [Float](repeating: 0, count: items.count * slot)
            errors = [String?](repeating: nil, count: items.count)
        }

        /// Decodes every item in parallel straight into its slot.
        func decode(with loader: ImageLoader) {
            let items = self.items, slot = self.slot
            values.withUnsafeMutableBufferPointer { buffer in
                errors.withUnsafeMutableBufferPointer { errorBuffer in
                    let base = UnsafeSendable(buffer.baseAddress!), failures = UnsafeSendable(errorBuffer.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: items.count) { i in
                        if let listingError = items[i].listingError {
                            failures.value[i] = "\(items[i].path): \(listingError)"
                            return
                        }
                        do {
                            try loader.load(path: items[i].path, into: base.value + i * slot)
                        } catch {
                            failures.value[i] = "\(error)"
                        }
                    }
                }
            }
        }

        /// The successfully decoded images as one [n, side, side, 3] tensor, and their positions.
        func input(side: Int) -> (Tensor, [Int])? {
            let good = errors.indices.filter { errors[$0] == nil }
            guard !good.isEmpty else { return nil }
            let tensor = Tensor(uninitialized: [good.count, side, side, 3]) { out in
                values.withUnsafeBufferPointer { src in
                    for (row, index) in good.enumerated() {
                        (out.baseAddress! + row * slot).update(from: src.baseAddress! + index * slot, count: slot)
                    }
                }
            }
            return (tensor, good)
        }
    }

    private func startDecoding(_ items: ArraySlice<InputItem>, side: Int) -> DecodedBatch {
        let batch = DecodedBatch(items: Array(items), slot: side * side * 3)
        let loader = self.loader
        decodeQueue.async {
            batch.decode(with: loader)
            batch.ready.signal()
        }
        return batch
    }

    /// Classifies `items` in order; `shouldStop` is asked between batches (Ctrl-C), and a stopped run
    /// has written every record of the batches it finished and nothing of the others.
    public func run(_ items: [InputItem], sink: RecordSink, progress: ProgressReporter? = nil,
                    shouldStop: () -> Bool = { false }) throws -> Summary {
        var summary = Summary()
        let start = Date()
        let side = card.preprocessing.cropSize
        let chunks = stride(from: 0, to: items.count, by: batchSize).map { items[$0..<min($0 + batchSize, items.count)] }
        var next = chunks.first.map { startDecoding($0, side: side) }
        for index in chunks.indices {
            guard let batch = next else { break }
            batch.ready.wait()
            if shouldStop() { summary.stopped = true; break }
            next = index + 1 < chunks.count ? startDecoding(chunks[index + 1], side: side) : nil

            var predictions: [Int: [Prediction]] = [:]
            if let (input, positions) = batch.input(side: side) {
                let rows = Softmax.lastAxis(classifier(input)).topK(topK)
                for (row, position) in positions.enumerated() {
                    predictions[position] = rows[row].map {
                        Prediction(index: $0.index, label: card.labels.label($0.index), score: $0.value)
                    }
                }
            }
            for (i, item) in batch.items.enumerated() {
                var record = ResultRecord(source: item.path, model: card.name)
                if let error = batch.errors[i] {
                    record.error = error
                    summary.failures += 1
                } else {
                    record.topK = predictions[i]
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
