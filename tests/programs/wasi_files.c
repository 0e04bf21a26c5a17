/* A WASI preview 1 workload for the wasm engine tests: the marker first, then it
 * reads a file of the image, writes one and reads it back, and reports its
 * arguments. Exits 3 when the first argument starts with 'x'. */
#include <stdio.h>
#include <string.h>
#include <time.h>

static int read_line(const char *path, char *line, size_t size) {
    FILE *file = fopen(path, "r");
    if (!file) {
        perror(path);
        return -1;
    }
    if (!fgets(line, (int)size, file)) {
        fclose(file);
        return -1;
    }
    fclose(file);
    line[strcspn(line, "\n")] = 0;
    return 0;
}

int main(int argc, char **argv) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    printf("PIPELINE_MAIN_START_NS=%lld\n", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    char input[128] = {0}, back[160] = {0};
    if (read_line("/data/input.txt", input, sizeof input) != 0) {
        return 2;
    }
    FILE *out = fopen("/data/output.txt", "w");
    if (!out) {
        perror("/data/output.txt");
        return 2;
    }
    fprintf(out, "%s+%d\n", input, argc - 1);
    fclose(out);
    if (read_line("/data/output.txt", back, sizeof back) != 0) {
        return 2;
    }
    printf("PIPELINE_RESULT status=ok input=%s written=%s args=%d first=%s\n", input, back,
           argc - 1, argc > 1 ? argv[1] : "-");
    return argc > 1 && argv[1][0] == 'x' ? 3 : 0;
}
