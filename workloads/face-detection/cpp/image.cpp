#include "image.hpp"

#include <cctype>
#include <cstdio>

namespace {

// Reads one whitespace-delimited header token, skipping '#' comments.
bool read_token(FILE* f, std::string& token) {
    token.clear();
    int c = std::fgetc(f);
    while (c != EOF) {
        if (c == '#') {
            while (c != EOF && c != '\n') c = std::fgetc(f);
        } else if (std::isspace(c)) {
            c = std::fgetc(f);
        } else {
            break;
        }
    }
    while (c != EOF && !std::isspace(c)) {
        token.push_back(static_cast<char>(c));
        c = std::fgetc(f);
    }
    // The single whitespace byte after the last header field has been consumed here.
    return !token.empty();
}

bool parse_positive(const std::string& s, int max_value, int& out) {
    if (s.empty() || s.size() > 9) return false;
    long v = 0;
    for (char ch : s) {
        if (ch < '0' || ch > '9') return false;
        v = v * 10 + (ch - '0');
    }
    if (v <= 0 || v > max_value) return false;
    out = static_cast<int>(v);
    return true;
}

struct Axis {
    std::vector<int> i0, i1, w1;  // source indices and weight of i1 in 1/2048 units
};

constexpr int kShift = 11;
constexpr int kOne = 1 << kShift;

// Source sample position of destination pixel d: ((2d+1)*src - dst) / (2*dst), exactly.
Axis make_axis(int src, int dst) {
    Axis a;
    a.i0.resize(dst);
    a.i1.resize(dst);
    a.w1.resize(dst);
    const int64_t den = 2 * static_cast<int64_t>(dst);
    for (int d = 0; d < dst; d++) {
        int64_t num = (2 * static_cast<int64_t>(d) + 1) * src - dst;
        if (num < 0) num = 0;
        int64_t i0 = num / den;
        int64_t frac = num % den;
        int w = static_cast<int>((frac * kOne + den / 2) / den);
        if (i0 >= src - 1) {
            i0 = src - 1;
            w = 0;
        }
        a.i0[d] = static_cast<int>(i0);
        a.i1[d] = static_cast<int>(i0 + (i0 + 1 < src ? 1 : 0));
        a.w1[d] = w;
    }
    return a;
}

}  // namespace

bool read_pgm(const std::string& path, GrayImage& image, std::string& error) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        error = "cannot-open-image path=" + path;
        return false;
    }
    std::string magic, w, h, maxval;
    int width = 0, height = 0, max_value = 0;
    bool ok = read_token(f, magic) && magic == "P5" && read_token(f, w) && read_token(f, h) &&
              read_token(f, maxval) && parse_positive(w, 1 << 15, width) && parse_positive(h, 1 << 15, height) &&
              parse_positive(maxval, 255, max_value);
    if (!ok) {
        std::fclose(f);
        error = "not-a-binary-8bit-pgm path=" + path;
        return false;
    }
    image.width = width;
    image.height = height;
    image.pixels.assign(static_cast<size_t>(width) * height, 0);
    size_t got = std::fread(image.pixels.data(), 1, image.pixels.size(), f);
    std::fclose(f);
    if (got != image.pixels.size()) {
        error = "truncated-pgm path=" + path;
        return false;
    }
    if (max_value != 255) {
        for (uint8_t& p : image.pixels) p = static_cast<uint8_t>((p * 255 + max_value / 2) / max_value);
    }
    return true;
}

GrayImage resize_bilinear(const GrayImage& src, int width, int height) {
    GrayImage dst;
    dst.width = width;
    dst.height = height;
    dst.pixels.resize(static_cast<size_t>(width) * height);
    const Axis ax = make_axis(src.width, width);
    const Axis ay = make_axis(src.height, height);
    for (int y = 0; y < height; y++) {
        const int64_t wy1 = ay.w1[y], wy0 = kOne - wy1;
        for (int x = 0; x < width; x++) {
            const int64_t wx1 = ax.w1[x], wx0 = kOne - wx1;
            const int64_t top = src.at(ax.i0[x], ay.i0[y]) * wx0 + src.at(ax.i1[x], ay.i0[y]) * wx1;
            const int64_t bottom = src.at(ax.i0[x], ay.i1[y]) * wx0 + src.at(ax.i1[x], ay.i1[y]) * wx1;
            const int64_t v = (top * wy0 + bottom * wy1 + (int64_t{1} << (2 * kShift - 1))) >> (2 * kShift);
            dst.pixels[static_cast<size_t>(y) * width + x] = static_cast<uint8_t>(v > 255 ? 255 : v);
        }
    }
    return dst;
}
