// The floor OpenBLAS sets for EfficientNet-Lite0: its 32 pointwise (1x1) convolutions at batch 1 as
// bare cblas_sgemm calls (row-major, weights [out, in] transposed, beta = 1: the calls Sluice makes,
// without the bias and ReLU6 that Sluice and ONNX Runtime also do), one thread, run in network order
// so each layer's weights come back from L3 as they do in a forward pass. Also the 1000x1280
// classifier at batch 1 as sgemm against sgemv (Sluice uses sgemv for one-row products). Prints two
// JSON lines.
//   cc -O2 lite0_sgemm.c $(pkg-config --cflags --libs openblas) && ./a.out [PASSES]
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int ascending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// {rows (pixels), out channels, in channels} of every 1x1 convolution, blocks 0-15 then the head.
static const int shapes[][3] = {
    {12544, 16, 32}, {12544, 96, 16}, {3136, 24, 96}, {3136, 144, 24}, {3136, 24, 144}, {3136, 144, 24},
    {784, 40, 144}, {784, 240, 40}, {784, 40, 240}, {784, 240, 40}, {196, 80, 240}, {196, 480, 80},
    {196, 80, 480}, {196, 480, 80}, {196, 80, 480}, {196, 480, 80}, {196, 112, 480}, {196, 672, 112},
    {196, 112, 672}, {196, 672, 112}, {196, 112, 672}, {196, 672, 112}, {49, 192, 672}, {49, 1152, 192},
    {49, 192, 1152}, {49, 1152, 192}, {49, 192, 1152}, {49, 1152, 192}, {49, 192, 1152}, {49, 1152, 192},
    {49, 320, 1152}, {49, 1280, 320},
};
enum { layers = sizeof(shapes) / sizeof(shapes[0]) };

int main(int argc, char **argv) {
    int passes = argc > 1 ? atoi(argv[1]) : 101;
    openblas_set_num_threads(1);
    size_t largest = 12544 * 240;
    float *a = malloc(sizeof(float) * largest), *c = malloc(sizeof(float) * largest);
    for (size_t i = 0; i < largest; i++) { a[i] = (float)rand() / RAND_MAX; c[i] = 0; }
    float *weights[layers];
    double *times = malloc(sizeof(double) * layers * passes), flop = 0;
    for (int l = 0; l < layers; l++) {
        size_t count = (size_t)shapes[l][1] * shapes[l][2];
        weights[l] = malloc(sizeof(float) * count);
        for (size_t i = 0; i < count; i++) weights[l][i] = (float)rand() / RAND_MAX - 0.5f;
        flop += 2.0 * shapes[l][0] * shapes[l][1] * shapes[l][2];
    }
    for (int p = 0; p < passes; p++) {
        for (int l = 0; l < layers; l++) {
            int m = shapes[l][0], n = shapes[l][1], k = shapes[l][2];
            double start = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, weights[l], k, 1, c, n);
            times[l * passes + p] = now() - start;
        }
    }
    double best = 0, median = 0;
    for (int l = 0; l < layers; l++) {
        qsort(times + l * passes, passes, sizeof(double), ascending);
        best += times[l * passes];
        median += times[l * passes + passes / 2];
    }
    printf("{\"engine\": \"openblas_sgemm\", \"threads\": 1, \"batch\": 1, \"layers\": %d, \"mflop\": %.0f, "
           "\"ms_best_sum\": %.3f, \"ms_median_sum\": %.3f}\n", layers, flop / 1e6, best * 1e3, median * 1e3);

    // The classifier head, one row: sgemm packs all of the 1000x1280 weights to use them once.
    float *head = malloc(sizeof(float) * 1000 * 1280);
    for (int i = 0; i < 1000 * 1280; i++) head[i] = (float)rand() / RAND_MAX - 0.5f;
    double *gemm = malloc(sizeof(double) * passes), *gemv = malloc(sizeof(double) * passes);
    for (int p = 0; p < passes; p++) {
        double start = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, 1000, 1280, 1, a, 1280, head, 1280, 1, c, 1000);
        gemm[p] = now() - start;
        start = now();
        cblas_sgemv(CblasRowMajor, CblasNoTrans, 1000, 1280, 1, head, 1280, a, 1, 1, c, 1);
        gemv[p] = now() - start;
    }
    qsort(gemm, passes, sizeof(double), ascending);
    qsort(gemv, passes, sizeof(double), ascending);
    printf("{\"engine\": \"openblas_head\", \"threads\": 1, \"batch\": 1, \"sgemm_ms_median\": %.3f, "
           "\"sgemv_ms_median\": %.3f}\n", gemm[passes / 2] * 1e3, gemv[passes / 2] * 1e3);
    return 0;
}
