#include <cstdint>
#include <cstdio>
#include <ctime>
#include <vector>

namespace {

constexpr int N = 100;
constexpr uint64_t SEED = 0x5EED;

// splitmix64: the same generator in every language, in wrapping u64 arithmetic.
struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        state += 0x9E3779B97F4A7C15ULL;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
};

}  // namespace

int main() {
    // clock_gettime gives nanoseconds everywhere (libc++'s system_clock is only microseconds).
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long start_ns =
        static_cast<unsigned long long>(ts.tv_sec) * 1000000000ULL + static_cast<unsigned long long>(ts.tv_nsec);
    std::printf("PIPELINE_MAIN_START_NS=%llu\n", start_ns);
    std::fflush(stdout);

    // Entries are k/8 with k in 0..1000: every product is a multiple of 1/64 and every
    // partial sum stays far below 2^47, so all arithmetic is exact in f64. The sum is
    // therefore bit-identical across languages and architectures, FMA contraction or not.
    SplitMix64 rng{SEED};
    std::vector<double> a(N * N), b(N * N), c(N * N);
    for (double& v : a) v = static_cast<double>(rng.next() % 1000) / 8.0;
    for (double& v : b) v = static_cast<double>(rng.next() % 1000) / 8.0;

    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < N; k++) acc += a[i * N + k] * b[k * N + j];
            c[i * N + j] = acc;
        }
    }
    double sum = 0.0;
    for (double v : c) sum += v;

    // Independent check: sum(A*B) = sum_k colsum_A[k] * rowsum_B[k].
    double check = 0.0;
    for (int k = 0; k < N; k++) {
        double col_a = 0.0, row_b = 0.0;
        for (int i = 0; i < N; i++) col_a += a[i * N + k];
        for (int j = 0; j < N; j++) row_b += b[k * N + j];
        check += col_a * row_b;
    }

    if (sum != check) {
        std::printf("PIPELINE_RESULT status=fail reason=checksum-mismatch sum=%.3f check=%.3f\n", sum, check);
        std::fflush(stdout);
        return 1;
    }
    std::printf("PIPELINE_RESULT status=ok sum=%.3f n=%d\n", sum, N);
    std::fflush(stdout);
    return 0;
}
