/*
 * Cost of the C probe on this host: rdtsc alone vs tsp_record (rdtsc + 32-byte store + release
 * store of head), measured side by side. Prints one JSON line. The bench plays the consumer by
 * advancing tail between rounds, outside the timed loops.
 */
#include "tickscope_probe.h"

#define ROUNDS 8
#define PER_ROUND (1u << 19)

int main(void) {
    static const char *const points[] = {"bench.point"};
    tsp_ring ring;
    if (tsp_open(&ring, "cbench", points, 1, 1u << 20) != 0) {
        perror("tsp_open");
        return 1;
    }
    uint64_t *tail = (uint64_t *)(ring.base + TSP_OFF_TAIL);
    double best_rdtsc = 1e9, best_record = 1e9;
    volatile uint64_t sink = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = tsp_clock_ns(CLOCK_MONOTONIC);
        uint64_t acc = 0;
        for (uint32_t i = 0; i < PER_ROUND; i++)
            acc += tsp_rdtsc();
        uint64_t t1 = tsp_clock_ns(CLOCK_MONOTONIC);
        sink += acc;
        double ns = (double)(t1 - t0) / PER_ROUND;
        if (ns < best_rdtsc)
            best_rdtsc = ns;
        *tail = ring.head_local; /* consumer caught up */
        t0 = tsp_clock_ns(CLOCK_MONOTONIC);
        for (uint32_t i = 0; i < PER_ROUND; i++)
            tsp_record(&ring, 0, i, 0, 0);
        t1 = tsp_clock_ns(CLOCK_MONOTONIC);
        ns = (double)(t1 - t0) / PER_ROUND;
        if (ns < best_record)
            best_record = ns;
        *tail = ring.head_local;
    }
    uint64_t dropped = *ring.dropped;
    char path[sizeof ring.path];
    memcpy(path, ring.path, sizeof path);
    tsp_close(&ring);
    unlink(path);
    printf("{\"rdtsc_ns\": %.2f, \"record_ns\": %.2f, \"dropped\": %llu}\n", best_rdtsc, best_record,
           (unsigned long long)dropped);
    return (int)(sink & 0);
}
