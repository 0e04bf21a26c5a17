#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

const char* const kLinesFile = "sorted-lines.txt";
const char* const kCharsFile = "sorted-chars.txt";

// Splits on '\n'; a trailing newline does not start an extra empty line.
std::vector<std::string_view> split_lines(const std::string& data) {
    std::vector<std::string_view> lines;
    size_t start = 0;
    while (start < data.size()) {
        size_t nl = data.find('\n', start);
        if (nl == std::string::npos) nl = data.size();
        lines.emplace_back(data.data() + start, nl - start);
        start = nl + 1;
    }
    return lines;
}

bool read_file(const std::string& path, std::string& out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    out.clear();
    // Heap buffer: wasm32-wasi's default stack is only 64 KiB.
    std::vector<char> buf(1 << 16);
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
    bool ok = !std::ferror(f);
    std::fclose(f);
    return ok;
}

bool write_file(const std::string& path, const std::string& data) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
    return std::fclose(f) == 0 && ok;
}

// Counting sort of the bytes of one line; bytes compare as unsigned values on every target.
void sort_bytes(std::string_view line, std::string& out) {
    size_t counts[256] = {};
    for (char c : line) counts[static_cast<unsigned char>(c)]++;
    for (int v = 0; v < 256; v++) out.append(counts[v], static_cast<char>(v));
}

std::vector<uint64_t> histogram(const std::vector<std::string_view>& lines) {
    std::vector<uint64_t> h(256, 0);
    for (std::string_view line : lines)
        for (char c : line) h[static_cast<unsigned char>(c)]++;
    return h;
}

bool bytes_sorted(std::string_view s) {
    for (size_t i = 1; i < s.size(); i++)
        if (static_cast<unsigned char>(s[i - 1]) > static_cast<unsigned char>(s[i])) return false;
    return true;
}

uint64_t fnv1a64(const std::string& data) {
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (char c : data) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x00000100000001b3ULL;
    }
    return hash;
}

// Returns true on success; `details` is the key=value tail of the result line, or the failure reason.
bool run(const std::string& input, const std::string& outdir, std::string& details) {
    struct stat st {};
    if (stat(outdir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        details = "output-dir-missing path=" + outdir;
        return false;
    }
    std::string data;
    if (!read_file(input, data)) {
        details = "cannot-read-input path=" + input;
        return false;
    }
    std::vector<std::string_view> lines = split_lines(data);

    // Phase 1: sort all lines at once, byte-wise lexicographic (char_traits<char> compares unsigned).
    std::string lines_path = outdir + "/" + kLinesFile;
    {
        std::vector<std::string_view> sorted = lines;
        std::sort(sorted.begin(), sorted.end());
        std::string out;
        out.reserve(data.size() + 1);
        for (std::string_view l : sorted) {
            out.append(l);
            out.push_back('\n');
        }
        if (!write_file(lines_path, out)) {
            details = "cannot-write path=" + lines_path;
            return false;
        }
    }

    // Phase 2: one line at a time, sort the bytes of each line (original line order).
    std::string chars_path = outdir + "/" + kCharsFile;
    {
        std::string out;
        out.reserve(data.size() + 1);
        for (std::string_view l : lines) {
            sort_bytes(l, out);
            out.push_back('\n');
        }
        if (!write_file(chars_path, out)) {
            details = "cannot-write path=" + chars_path;
            return false;
        }
    }

    // Check what actually landed on disk.
    std::vector<uint64_t> input_hist = histogram(lines);
    std::string lines_out;
    if (!read_file(lines_path, lines_out)) {
        details = "cannot-read-back path=" + lines_path;
        return false;
    }
    std::vector<std::string_view> back = split_lines(lines_out);
    if (back.size() != lines.size()) {
        details = "line-count-mismatch expected=" + std::to_string(lines.size()) + " got=" + std::to_string(back.size());
        return false;
    }
    for (size_t i = 1; i < back.size(); i++) {
        if (back[i - 1] > back[i]) {
            details = "lines-not-sorted at=" + std::to_string(i);
            return false;
        }
    }
    if (histogram(back) != input_hist) {
        details = "lines-byte-multiset-differs";
        return false;
    }

    std::string chars_out;
    if (!read_file(chars_path, chars_out)) {
        details = "cannot-read-back path=" + chars_path;
        return false;
    }
    std::vector<std::string_view> back_chars = split_lines(chars_out);
    if (back_chars.size() != lines.size()) {
        details = "chars-line-count-mismatch expected=" + std::to_string(lines.size()) +
                  " got=" + std::to_string(back_chars.size());
        return false;
    }
    for (size_t i = 0; i < lines.size(); i++) {
        if (back_chars[i].size() != lines[i].size() || !bytes_sorted(back_chars[i])) {
            details = "chars-not-sorted line=" + std::to_string(i + 1);
            return false;
        }
    }
    if (histogram(back_chars) != input_hist) {
        details = "chars-byte-multiset-differs";
        return false;
    }

    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(lines_out)));
    details = "lines=" + std::to_string(lines.size()) + " bytes=" + std::to_string(lines_out.size()) +
              " checksum=" + hex;
    return true;
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

    std::string details;
    bool ok = false;
    if (argc != 3) {
        details = "usage=sorting-INPUT-OUTDIR";
    } else {
        ok = run(argv[1], argv[2], details);
    }
    std::printf("PIPELINE_RESULT status=%s %s%s\n", ok ? "ok" : "fail", ok ? "" : "reason=", details.c_str());
    std::fflush(stdout);
    return ok ? 0 : 1;
}
