/*
 * A small instrumented C program: a fake pipeline with 8 probe points per trace.
 *   c_writer TRACES [RATE_PER_S] [CAPACITY]
 * Writes TRACES traces (8 records each) to a ring in $TICKSCOPE_RING_DIR, paced at RATE_PER_S
 * traces per second (0 = as fast as possible), then prints "produced=N dropped=M".
 */
#include "tickscope_probe.h"

static const char *const POINTS[] = {"md.rx", "md.decoded", "book.updated", "signal",
                                     "risk.checked", "order.encoded", "order.tx", "ack.rx"};

int main(int argc, char **argv) {
    uint64_t traces = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000;
    double rate = argc > 2 ? atof(argv[2]) : 0.0;
    uint64_t capacity = argc > 3 ? strtoull(argv[3], NULL, 10) : (1u << 16);
    uint64_t trace_base = argc > 4 ? strtoull(argv[4], NULL, 10) : 1;
    tsp_ring ring;
    if (tsp_open(&ring, "cwriter", POINTS, 8, capacity) != 0) {
        perror("tsp_open");
        return 1;
    }
    uint64_t start = tsp_clock_ns(CLOCK_MONOTONIC);
    uint64_t produced = 0;
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < traces; i++) {
        if (rate > 0) {
            uint64_t due = start + (uint64_t)((double)i * 1e9 / rate);
            while (tsp_clock_ns(CLOCK_MONOTONIC) < due) {
            }
        }
        for (uint32_t p = 0; p < 8; p++) {
            for (int k = 0; k < 20; k++)
                sink += k; /* a little work between points */
            tsp_record(&ring, p, trace_base + i, 0, p == 6 ? 42 : 0);
            produced++;
        }
        if ((i & 0xffff) == 0)
            tsp_heartbeat(&ring);
    }
    uint64_t dropped = *ring.dropped;
    tsp_close(&ring);
    printf("produced=%llu dropped=%llu\n", (unsigned long long)produced, (unsigned long long)dropped);
    return 0;
}
