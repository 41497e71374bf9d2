/*
 * A C subject that declares its points as a Python one does: stage names, the trade point, a point
 * after it (the ack) measured as a stage of its own. Valid C11 and C++17.
 *
 *   cc -O2 $(python -m tickscope.probe --cflags) -o c_stages c_stages.c
 *   tickscope profile -- ./c_stages 20000 5000
 *
 *   c_stages [TRACES] [RATE_PER_S]
 * Writes TRACES ticks (5 points each) paced at RATE_PER_S (0 = as fast as possible), then prints
 * "produced=N dropped=M".
 */
#include "tickscope_probe.h"

enum { MD_RX, MD_DECODED, SIGNAL, ORDER_TX, ACK_RX, N_POINTS };

/* Index = point id; each stage is the span that ends at its point. */
static const tsp_point POINTS[N_POINTS] = {
    {"md.rx", NULL, TSP_CLOCK_TSC, 0},                      /* the tick arrives: no stage ends here */
    {"md.decoded", "feed", TSP_CLOCK_TSC, 0},               /* md.rx -> md.decoded */
    {"signal", "strategy", TSP_CLOCK_TSC, 0},               /* md.decoded -> signal */
    {"order.tx", "send", TSP_CLOCK_TSC, TSP_POINT_TRADE},   /* tick-to-trade ends here */
    {"ack.rx", "order_rtt", TSP_CLOCK_TSC, 0},              /* after the trade point: not in it */
};

/* A little work between points, so that every stage is a few hundred nanoseconds or more. */
static uint64_t work(uint64_t seed, int rounds) {
    for (int i = 0; i < rounds; i++)
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return seed;
}

int main(int argc, char **argv) {
    uint64_t traces = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
    double rate = argc > 2 ? atof(argv[2]) : 5000.0;
    /* Room for ~1 s of records: the collector drains every few milliseconds. */
    uint64_t capacity = 1u << 16;
    tsp_ring ring;
    int rc = tsp_open_points(&ring, "cstages", POINTS, N_POINTS, capacity);
    if (rc != 0) {
        fprintf(stderr, "c_stages: tsp_open_points: %s\n", strerror(-rc));
        return 1;
    }
    uint64_t start = tsp_clock_ns(CLOCK_MONOTONIC), last_beat = start;
    uint64_t sink = 0;
    for (uint64_t seq = 1; seq <= traces; seq++) {
        if (rate > 0) { /* idle until the next tick is due: the place for the heartbeat */
            uint64_t due = start + (uint64_t)((double)(seq - 1) * 1e9 / rate);
            uint64_t now;
            while ((now = tsp_clock_ns(CLOCK_MONOTONIC)) < due) {
                if (now - last_beat > 100000000ull) {
                    tsp_heartbeat(&ring);
                    last_beat = now;
                }
            }
        }
        uint64_t rx = tsp_rdtsc(); /* the packet is here; its sequence number is known only once decoded */
        sink = work(sink + seq, 200);
        tsp_record_ts(&ring, MD_RX, seq, rx, 0, 0);
        tsp_record(&ring, MD_DECODED, seq, 0, 0);
        sink = work(sink, 100);
        tsp_record(&ring, SIGNAL, seq, 0, 0);
        sink = work(sink, 300);
        tsp_record(&ring, ORDER_TX, seq, 0, 0); /* leg 0: one order per tick */
        sink = work(sink, 2000);               /* the venue answers */
        tsp_record(&ring, ACK_RX, seq, 0, 0);
    }
    uint64_t produced = *ring.head, dropped = *ring.dropped;
    tsp_close(&ring);
    printf("produced=%llu dropped=%llu\n", (unsigned long long)produced, (unsigned long long)dropped);
    volatile uint64_t keep = sink; /* the work must not be optimised away */
    (void)keep;
    return 0;
}
