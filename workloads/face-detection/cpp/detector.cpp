#include "detector.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

namespace {

// Summed-area tables with one extra zero row and column: stride = width + 1.
struct Integral {
    int stride = 0;
    std::vector<int64_t> sum;
    std::vector<int64_t> sqsum;
};

Integral make_integral(const GrayImage& img) {
    Integral in;
    in.stride = img.width + 1;
    const size_t size = static_cast<size_t>(in.stride) * (img.height + 1);
    in.sum.assign(size, 0);
    in.sqsum.assign(size, 0);
    for (int y = 0; y < img.height; y++) {
        int64_t row = 0, rowsq = 0;
        for (int x = 0; x < img.width; x++) {
            const int64_t p = img.at(x, y);
            row += p;
            rowsq += p * p;
            const size_t i = static_cast<size_t>(y + 1) * in.stride + (x + 1);
            in.sum[i] = in.sum[i - in.stride] + row;
            in.sqsum[i] = in.sqsum[i - in.stride] + rowsq;
        }
    }
    return in;
}

// Corner offsets of a rectangle relative to the window's top-left table entry.
struct RectOffsets {
    int tl, tr, bl, br;
};

RectOffsets offsets(int x, int y, int w, int h, int stride) {
    return {y * stride + x, y * stride + x + w, (y + h) * stride + x, (y + h) * stride + x + w};
}

inline int64_t rect_sum(const int64_t* base, const RectOffsets& o) {
    return base[o.br] - base[o.tr] - base[o.bl] + base[o.tl];
}

// A feature prepared for one table stride. When all weights are integers (true for the
// stock cascades) the feature value is computed exactly in integers, so the result is the
// same on every architecture regardless of floating-point contraction.
struct PreparedFeature {
    int count = 0;
    RectOffsets rect[3];
    int64_t iweight[3];
    double weight[3];
    bool integral_weights = true;
};

std::vector<PreparedFeature> prepare_features(const Cascade& c, int stride) {
    std::vector<PreparedFeature> out(c.features.size());
    for (size_t i = 0; i < c.features.size(); i++) {
        PreparedFeature& p = out[i];
        p.count = static_cast<int>(c.features[i].rects.size());
        for (int r = 0; r < p.count; r++) {
            const HaarRect& hr = c.features[i].rects[r];
            p.rect[r] = offsets(hr.x, hr.y, hr.w, hr.h, stride);
            p.weight[r] = hr.weight;
            p.iweight[r] = static_cast<int64_t>(hr.weight);
            if (static_cast<double>(p.iweight[r]) != hr.weight) p.integral_weights = false;
        }
    }
    return out;
}

inline double feature_value(const PreparedFeature& f, const int64_t* base) {
    if (f.integral_weights) {
        int64_t v = 0;
        for (int r = 0; r < f.count; r++) v += f.iweight[r] * rect_sum(base, f.rect[r]);
        return static_cast<double>(v);
    }
    double v = 0.0;
    for (int r = 0; r < f.count; r++) v += f.weight[r] * static_cast<double>(rect_sum(base, f.rect[r]));
    return v;
}

// Runs the cascade on one window; true if every stage accepts it.
bool evaluate_window(const Cascade& c, const std::vector<PreparedFeature>& feats, const Integral& in, int x, int y,
                     const RectOffsets& norm, int64_t norm_area) {
    const size_t origin = static_cast<size_t>(y) * in.stride + x;
    const int64_t* sum = in.sum.data() + origin;
    const int64_t* sq = in.sqsum.data() + origin;

    // Variance normalisation over the inner window: feature values are compared with
    // threshold * sqrt(area*sum(p^2) - sum(p)^2) = threshold * area * stddev.
    const int64_t s = rect_sum(sum, norm);
    const int64_t s2 = rect_sum(sq, norm);
    const int64_t spread = norm_area * s2 - s * s;
    // Nearly flat windows (stddev <= 10 grey levels) cannot hold a face; skipping them
    // also avoids dividing by a tiny spread. Exact integer test.
    if (spread <= 100 * norm_area * norm_area) return false;
    const double nf = std::sqrt(static_cast<double>(spread));

    for (const Stage& stage : c.stages) {
        double total = 0.0;
        for (const WeakClassifier& weak : stage.weak) {
            int node = 0;
            for (;;) {
                const TreeNode& t = weak.nodes[node];
                const double value = feature_value(feats[t.feature], sum);
                const int next = value < t.threshold * nf ? t.left : t.right;
                if (next <= 0) {
                    total += weak.leaves[-next];
                    break;
                }
                node = next;
            }
        }
        if (total < stage.threshold) return false;
    }
    return true;
}

// lround of a lone product or quotient: no multiply-add for a compiler to fuse, so the
// rounding is identical on every target.
int round_half_up(double v) { return static_cast<int>(std::lround(v)); }

bool similar(const Box& a, const Box& b, double eps) {
    const double delta = eps * (std::min(a.w, b.w) + std::min(a.h, b.h)) * 0.5;
    return std::abs(a.x - b.x) <= delta && std::abs(a.y - b.y) <= delta &&
           std::abs(a.x + a.w - b.x - b.w) <= delta && std::abs(a.y + a.h - b.y - b.h) <= delta;
}

int find_root(std::vector<int>& parent, int i) {
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

}  // namespace

std::vector<Box> group_boxes(const std::vector<Box>& boxes, int min_neighbors, double eps) {
    const int n = static_cast<int>(boxes.size());
    // Transitive closure of the similarity relation (union-find).
    std::vector<int> parent(n);
    std::iota(parent.begin(), parent.end(), 0);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (similar(boxes[i], boxes[j], eps)) parent[find_root(parent, i)] = find_root(parent, j);

    // Average each cluster (rounded half up; coordinates are non-negative).
    std::vector<int64_t> sx(n, 0), sy(n, 0), sw(n, 0), sh(n, 0), count(n, 0);
    for (int i = 0; i < n; i++) {
        const int r = find_root(parent, i);
        sx[r] += boxes[i].x;
        sy[r] += boxes[i].y;
        sw[r] += boxes[i].w;
        sh[r] += boxes[i].h;
        count[r]++;
    }
    std::vector<Box> avg;
    std::vector<int64_t> votes;
    for (int r = 0; r < n; r++) {
        if (count[r] <= min_neighbors) continue;
        const int64_t c = count[r];
        avg.push_back({static_cast<int>((2 * sx[r] + c) / (2 * c)), static_cast<int>((2 * sy[r] + c) / (2 * c)),
                       static_cast<int>((2 * sw[r] + c) / (2 * c)), static_cast<int>((2 * sh[r] + c) / (2 * c))});
        votes.push_back(c);
    }

    // Drop a cluster that lies (within eps of the outer size) inside another cluster with
    // more support, or that is itself weak.
    std::vector<Box> out;
    for (size_t i = 0; i < avg.size(); i++) {
        const Box& a = avg[i];
        bool nested = false;
        for (size_t j = 0; j < avg.size() && !nested; j++) {
            if (i == j) continue;
            const Box& b = avg[j];
            const int dx = static_cast<int>(b.w * eps);
            const int dy = static_cast<int>(b.h * eps);
            nested = a.x >= b.x - dx && a.y >= b.y - dy && a.x + a.w <= b.x + b.w + dx &&
                     a.y + a.h <= b.y + b.h + dy && (votes[j] > std::max<int64_t>(3, votes[i]) || votes[i] < 3);
        }
        if (!nested) out.push_back(a);
    }
    std::sort(out.begin(), out.end(), [](const Box& p, const Box& q) {
        if (p.y != q.y) return p.y < q.y;
        if (p.x != q.x) return p.x < q.x;
        if (p.w != q.w) return p.w < q.w;
        return p.h < q.h;
    });
    return out;
}

std::vector<Box> detect_multiscale(const Cascade& cascade, const GrayImage& image, const DetectParams& params,
                                   DetectStats* stats) {
    std::vector<Box> hits;
    DetectStats local;
    // Scale the image down rather than the features up, so feature rectangles stay exact.
    for (double factor = 1.0;; factor *= params.scale_factor) {
        const int win_w = round_half_up(cascade.width * factor);
        const int win_h = round_half_up(cascade.height * factor);
        const int sw = round_half_up(image.width / factor);
        const int sh = round_half_up(image.height / factor);
        if (sw < cascade.width || sh < cascade.height) break;
        if (win_w < params.min_size || win_h < params.min_size) continue;

        const GrayImage scaled = resize_bilinear(image, sw, sh);
        const Integral in = make_integral(scaled);
        const std::vector<PreparedFeature> feats = prepare_features(cascade, in.stride);
        const RectOffsets norm = offsets(1, 1, cascade.width - 2, cascade.height - 2, in.stride);
        const int64_t norm_area = static_cast<int64_t>(cascade.width - 2) * (cascade.height - 2);
        // Step 2 scaled pixels while windows are small, 1 once they are large (as OpenCV does).
        const int step = factor > 2.0 ? 1 : 2;
        local.scales++;
        for (int y = 0; y + cascade.height <= sh; y += step) {
            for (int x = 0; x + cascade.width <= sw; x += step) {
                local.windows++;
                if (evaluate_window(cascade, feats, in, x, y, norm, norm_area)) {
                    hits.push_back({round_half_up(x * factor), round_half_up(y * factor), win_w, win_h});
                }
            }
        }
    }
    local.raw_hits = static_cast<long long>(hits.size());
    if (stats) *stats = local;
    return group_boxes(hits, params.min_neighbors, params.group_eps);
}
