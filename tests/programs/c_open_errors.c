/*
 * tsp_open's error paths, one case per run:   c_open_errors CASE
 * Prints "rc=<return value> errno=<errno> closed=<1 if the ring stayed closed>", then, for the "ok"
 * case, closes the ring twice (the second close must be a no-op).
 */
#include "tickscope_probe.h"

static const char *const NAMES[] = {"md.rx", "order.tx"};

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "ok";
    char long_name[64];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0'; /* 63 bytes: longer than a point name may be */
    tsp_point points[2] = {{"md.rx", NULL, TSP_CLOCK_TSC, 0}, {"order.tx", "send", TSP_CLOCK_TSC, TSP_POINT_TRADE}};
    uint64_t capacity = 1024;
    uint32_t n = 2;
    const char *writer = "errors";
    if (!strcmp(c, "capacity0"))
        capacity = 0;
    else if (!strcmp(c, "capacity1000"))
        capacity = 1000;
    else if (!strcmp(c, "capacity_huge"))
        capacity = 1ull << 63;
    else if (!strcmp(c, "no_points"))
        n = 0;
    else if (!strcmp(c, "too_many_points"))
        n = TSP_MAX_POINTS + 1;
    else if (!strcmp(c, "long_point_name"))
        points[1].name = long_name;
    else if (!strcmp(c, "long_stage"))
        points[1].stage = long_name;
    else if (!strcmp(c, "duplicate_point"))
        points[1].name = "md.rx";
    else if (!strcmp(c, "unknown_clock"))
        points[1].clock = 9;
    else if (!strcmp(c, "unknown_flag"))
        points[1].flags = 4; /* neither TSP_POINT_TRADE nor TSP_POINT_LEG */
    else if (!strcmp(c, "empty_writer_name"))
        writer = "";
    tsp_ring ring;
    errno = 0;
    int rc = !strcmp(c, "names") ? tsp_open(&ring, writer, NAMES, n, capacity)
                                 : tsp_open_points(&ring, writer, points, n, capacity);
    printf("rc=%d errno=%d closed=%d\n", rc, errno, ring.base == NULL);
    tsp_close(&ring);
    tsp_close(&ring);
    return 0;
}
