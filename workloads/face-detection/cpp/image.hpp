#pragma once

#include <cstdint>
#include <string>
#include <vector>

// 8-bit grayscale image, row-major, no padding.
struct GrayImage {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;

    uint8_t at(int x, int y) const { return pixels[static_cast<size_t>(y) * width + x]; }
};

// Reads a binary PGM (P5, maxval <= 255). Returns false and sets `error` on failure.
bool read_pgm(const std::string& path, GrayImage& image, std::string& error);

// Bilinear resize in fixed-point integer arithmetic (pixel-centre aligned), so every
// target produces bit-identical pixels.
GrayImage resize_bilinear(const GrayImage& src, int width, int height);
