#pragma once

#include <string>
#include <vector>

// A Haar feature: up to three weighted rectangles in window coordinates.
struct HaarRect {
    int x, y, w, h;
    double weight;
};

struct HaarFeature {
    std::vector<HaarRect> rects;
};

// One node of a weak classifier tree. A child index <= 0 names leaf -index.
struct TreeNode {
    int left, right, feature;
    double threshold;
};

struct WeakClassifier {
    std::vector<TreeNode> nodes;
    std::vector<double> leaves;
};

struct Stage {
    double threshold;
    std::vector<WeakClassifier> weak;
};

struct Cascade {
    int width = 0;
    int height = 0;
    std::vector<Stage> stages;
    std::vector<HaarFeature> features;
};

// Loads an OpenCV "new format" BOOST/HAAR cascade (<cascade> with <stages> and <features>).
// Tilted features are rejected. Returns false and sets `error` on failure.
bool load_cascade(const std::string& path, Cascade& cascade, std::string& error);
