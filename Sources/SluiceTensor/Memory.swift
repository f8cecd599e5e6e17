#if os(Linux)
// glibc's mallopt (malloc.h is not part of the Glibc module); parameter numbers from malloc.h.
@_silgen_name("mallopt") private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
private let M_TRIM_THRESHOLD: Int32 = -1
private let M_MMAP_THRESHOLD: Int32 = -3
#endif

enum Memory {
    /// Keeps freed activation buffers in the heap instead of returning them to the kernel: glibc
    /// serves large blocks with fresh mmaps by default, and every forward pass then pays page faults
    /// and zeroing for each layer's output (measured: ~10% of EfficientNet-Lite0's time).
    static let keepLargeBlocks: Void = {
        #if os(Linux)
        _ = glibcMallopt(M_MMAP_THRESHOLD, 512 << 20)
        _ = glibcMallopt(M_TRIM_THRESHOLD, 1 << 30)
        #endif
    }()
}
