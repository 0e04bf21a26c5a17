#include "cascade.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// Minimal XML tree: element name, concatenated text, children. Attributes are skipped;
// the cascade format needs neither attributes nor entities.
struct XmlNode {
    std::string name;
    std::string text;
    std::vector<XmlNode> children;

    const XmlNode* child(const char* n) const {
        for (const XmlNode& c : children)
            if (c.name == n) return &c;
        return nullptr;
    }
};

// Keeps error messages on one readable line even for binary input.
std::string printable(const std::string& s) {
    std::string out;
    for (char c : s.substr(0, 40)) out.push_back(c > ' ' && c < 127 ? c : '?');
    return out;
}

class XmlParser {
public:
    explicit XmlParser(const std::string& s) : s_(s) {}

    bool parse(XmlNode& root, std::string& error) {
        root.name = "#document";
        if (!parse_content(root, error)) return false;
        if (pos_ < s_.size()) {
            error = "xml-unexpected-close-tag";
            return false;
        }
        return true;
    }

private:
    const std::string& s_;
    size_t pos_ = 0;

    bool starts(const char* p) const { return s_.compare(pos_, std::strlen(p), p) == 0; }

    bool skip_past(const char* end, std::string& error) {
        size_t e = s_.find(end, pos_);
        if (e == std::string::npos) {
            error = std::string("xml-unterminated-") + end;
            return false;
        }
        pos_ = e + std::strlen(end);
        return true;
    }

    // Parses children and text of `parent` until its closing tag (left unconsumed) or EOF.
    bool parse_content(XmlNode& parent, std::string& error) {
        while (pos_ < s_.size()) {
            if (s_[pos_] != '<') {
                size_t e = s_.find('<', pos_);
                if (e == std::string::npos) e = s_.size();
                parent.text.append(s_, pos_, e - pos_);
                pos_ = e;
            } else if (starts("<!--")) {
                if (!skip_past("-->", error)) return false;
            } else if (starts("<?")) {
                if (!skip_past("?>", error)) return false;
            } else if (starts("<!")) {
                if (!skip_past(">", error)) return false;
            } else if (starts("</")) {
                return true;
            } else {
                parent.children.emplace_back();
                if (!parse_element(parent.children.back(), error)) return false;
            }
        }
        return true;
    }

    bool parse_element(XmlNode& node, std::string& error) {
        pos_++;  // '<'
        size_t start = pos_;
        while (pos_ < s_.size() && !std::strchr(" \t\r\n/>", s_[pos_])) pos_++;
        node.name = s_.substr(start, pos_ - start);
        size_t gt = s_.find('>', pos_);
        if (node.name.empty() || gt == std::string::npos) {
            error = "xml-bad-tag";
            return false;
        }
        bool self_closing = s_[gt - 1] == '/';
        pos_ = gt + 1;
        if (self_closing) return true;
        if (!parse_content(node, error)) return false;
        std::string close = "</" + node.name;
        if (!starts(close.c_str())) {
            error = "xml-missing-close-tag name=" + printable(node.name);
            return false;
        }
        pos_ += close.size();
        return skip_past(">", error);
    }
};

// Parses all whitespace-separated numbers of an element's text.
bool numbers(const XmlNode* node, std::vector<double>& out) {
    out.clear();
    if (!node) return false;
    const char* p = node->text.c_str();
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) return true;
        char* end = nullptr;
        double v = std::strtod(p, &end);
        if (end == p) return false;
        out.push_back(v);
        p = end;
    }
}

bool integer(const XmlNode* node, int& out) {
    std::vector<double> v;
    if (!numbers(node, v) || v.size() != 1 || v[0] != static_cast<int>(v[0])) return false;
    out = static_cast<int>(v[0]);
    return true;
}

std::string trimmed(const XmlNode* node) {
    if (!node) return "";
    size_t b = node->text.find_first_not_of(" \t\r\n");
    size_t e = node->text.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? "" : node->text.substr(b, e - b + 1);
}

bool read_weak(const XmlNode& n, WeakClassifier& weak, std::string& error) {
    std::vector<double> internal, leaves;
    if (!numbers(n.child("internalNodes"), internal) || internal.empty() || internal.size() % 4 != 0 ||
        !numbers(n.child("leafValues"), leaves) || leaves.empty()) {
        error = "cascade-bad-weak-classifier";
        return false;
    }
    for (size_t i = 0; i < internal.size(); i += 4) {
        TreeNode t{static_cast<int>(internal[i]), static_cast<int>(internal[i + 1]), static_cast<int>(internal[i + 2]),
                   internal[i + 3]};
        weak.nodes.push_back(t);
    }
    weak.leaves = leaves;
    return true;
}

bool read_feature(const XmlNode& n, HaarFeature& feature, int win_w, int win_h, std::string& error) {
    int tilted = 0;
    if (n.child("tilted") && (!integer(n.child("tilted"), tilted) || tilted != 0)) {
        error = "cascade-tilted-features-unsupported";
        return false;
    }
    const XmlNode* rects = n.child("rects");
    if (!rects || rects->children.empty() || rects->children.size() > 3) {
        error = "cascade-bad-feature-rects";
        return false;
    }
    for (const XmlNode& r : rects->children) {
        std::vector<double> v;
        if (!numbers(&r, v) || v.size() != 5) {
            error = "cascade-bad-rect";
            return false;
        }
        HaarRect rect{static_cast<int>(v[0]), static_cast<int>(v[1]), static_cast<int>(v[2]), static_cast<int>(v[3]),
                      v[4]};
        if (rect.x < 0 || rect.y < 0 || rect.w <= 0 || rect.h <= 0 || rect.x + rect.w > win_w ||
            rect.y + rect.h > win_h) {
            error = "cascade-rect-outside-window";
            return false;
        }
        feature.rects.push_back(rect);
    }
    return true;
}

}  // namespace

bool load_cascade(const std::string& path, Cascade& cascade, std::string& error) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        error = "cannot-open-cascade path=" + path;
        return false;
    }
    std::string text;
    // Heap buffer: wasm32-wasi's default stack is only 64 KiB.
    std::vector<char> buf(1 << 16);
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) text.append(buf.data(), n);
    std::fclose(f);

    XmlNode doc;
    if (!XmlParser(text).parse(doc, error)) return false;
    const XmlNode* storage = doc.child("opencv_storage");
    const XmlNode* root = storage ? storage->child("cascade") : nullptr;
    if (!root) {
        error = "cascade-not-new-format (no opencv_storage/cascade element)";
        return false;
    }
    if (trimmed(root->child("stageType")) != "BOOST" || trimmed(root->child("featureType")) != "HAAR") {
        error = "cascade-not-boost-haar";
        return false;
    }
    if (!integer(root->child("width"), cascade.width) || !integer(root->child("height"), cascade.height) ||
        cascade.width < 3 || cascade.height < 3) {
        error = "cascade-bad-window-size";
        return false;
    }
    const XmlNode* stages = root->child("stages");
    const XmlNode* features = root->child("features");
    if (!stages || !features || stages->children.empty() || features->children.empty()) {
        error = "cascade-missing-stages-or-features";
        return false;
    }
    for (const XmlNode& fn : features->children) {
        cascade.features.emplace_back();
        if (!read_feature(fn, cascade.features.back(), cascade.width, cascade.height, error)) return false;
    }
    for (const XmlNode& sn : stages->children) {
        Stage stage{};
        std::vector<double> thr;
        const XmlNode* weak = sn.child("weakClassifiers");
        if (!numbers(sn.child("stageThreshold"), thr) || thr.size() != 1 || !weak) {
            error = "cascade-bad-stage";
            return false;
        }
        stage.threshold = thr[0];
        for (const XmlNode& wn : weak->children) {
            stage.weak.emplace_back();
            if (!read_weak(wn, stage.weak.back(), error)) return false;
        }
        cascade.stages.push_back(std::move(stage));
    }
    // Validate tree links once so evaluation needs no bounds checks.
    const int nfeatures = static_cast<int>(cascade.features.size());
    for (const Stage& s : cascade.stages) {
        for (const WeakClassifier& w : s.weak) {
            const int nnodes = static_cast<int>(w.nodes.size());
            const int nleaves = static_cast<int>(w.leaves.size());
            for (int i = 0; i < nnodes; i++) {
                const TreeNode& t = w.nodes[i];
                bool ok = t.feature >= 0 && t.feature < nfeatures;
                // Links point forward only, so evaluation always terminates.
                for (int c : {t.left, t.right}) ok = ok && (c > 0 ? c > i && c < nnodes : -c < nleaves);
                if (!ok) {
                    error = "cascade-bad-tree-index";
                    return false;
                }
            }
        }
    }
    return true;
}
