// Viola-Jones face detection with an OpenCV Haar cascade.
// Usage: face-detection <cascade.xml> <image.pgm> [--expect-faces N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include "cascade.hpp"
#include "detector.hpp"
#include "image.hpp"

namespace {

int fail(const std::string& reason) {
    std::printf("PIPELINE_RESULT status=fail reason=%s\n", reason.c_str());
    std::fflush(stdout);
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    // clock_gettime gives nanoseconds everywhere (libc++'s system_clock is only microseconds).
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long start_ns =
        static_cast<unsigned long long>(ts.tv_sec) * 1000000000ULL + static_cast<unsigned long long>(ts.tv_nsec);
    std::printf("PIPELINE_MAIN_START_NS=%llu\n", start_ns);
    std::fflush(stdout);

    long expect = -1;
    if (argc == 5 && std::strcmp(argv[3], "--expect-faces") == 0) {
        char* end = nullptr;
        expect = std::strtol(argv[4], &end, 10);
        if (end == argv[4] || *end != '\0' || expect < 0) return fail("bad-expect-faces value=" + std::string(argv[4]));
    } else if (argc != 3) {
        return fail("usage=face-detection-CASCADE-IMAGE-[--expect-faces-N]");
    }

    std::string error;
    Cascade cascade;
    if (!load_cascade(argv[1], cascade, error)) return fail(error);
    GrayImage image;
    if (!read_pgm(argv[2], image, error)) return fail(error);

    DetectParams params;
    DetectStats stats;
    std::vector<Box> faces = detect_multiscale(cascade, image, params, &stats);

    std::string boxes;
    for (const Box& b : faces) {
        std::printf("face x=%d y=%d w=%d h=%d\n", b.x, b.y, b.w, b.h);
        if (!boxes.empty()) boxes += ";";
        boxes += std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.w) + "," +
                 std::to_string(b.h);
    }
    std::fprintf(stderr, "face-detection: image %dx%d, %d stages, %d scales, %lld windows, %lld raw hits\n",
                 image.width, image.height, static_cast<int>(cascade.stages.size()), stats.scales, stats.windows,
                 stats.raw_hits);
    if (expect >= 0 && static_cast<long>(faces.size()) != expect) {
        return fail("face-count-mismatch expected=" + std::to_string(expect) +
                    " faces=" + std::to_string(faces.size()) + " boxes=" + boxes);
    }
    std::printf("PIPELINE_RESULT status=ok faces=%d boxes=%s\n", static_cast<int>(faces.size()), boxes.c_str());
    std::fflush(stdout);
    return 0;
}
