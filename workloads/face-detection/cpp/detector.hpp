#pragma once

#include <vector>

#include "cascade.hpp"
#include "image.hpp"

struct Box {
    int x, y, w, h;
};

struct DetectParams {
    double scale_factor = 1.1;  // pyramid step, as OpenCV's default
    int min_neighbors = 3;      // a group needs more than this many raw hits
    int min_size = 24;          // smallest window side in original pixels
    double group_eps = 0.2;     // similarity tolerance of the grouping step
};

struct DetectStats {
    int scales = 0;
    long long windows = 0;
    long long raw_hits = 0;
};

// Viola-Jones detection over an image pyramid, followed by grouping. The result is sorted
// by (y, x, w, h) so output order never depends on the grouping order.
std::vector<Box> detect_multiscale(const Cascade& cascade, const GrayImage& image, const DetectParams& params,
                                   DetectStats* stats);

// Clusters similar boxes, averages each cluster, keeps clusters with more than
// `min_neighbors` members and drops clusters nested inside a stronger one.
std::vector<Box> group_boxes(const std::vector<Box>& boxes, int min_neighbors, double eps);
