/* A tiny workload for engine tests: the marker first, then a result line. */
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    printf("PIPELINE_MAIN_START_NS=%lld\n", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    printf("PIPELINE_RESULT status=ok args=%d\n", argc - 1);
    return argc > 1 && argv[1][0] == 'x' ? 3 : 0;
}
