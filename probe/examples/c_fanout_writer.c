/*
 * The collector bench's fan-out subject: 5 shared points, then 3 legs per tick of 3 points each,
 * and 3 dimensions (symbol on the tick, venue and side on each leg's order).
 *   c_fanout_writer TRACES [CAPACITY] [TRACE_BASE]
 * 14 records per trace; stamps as fast as it can (the bench fills the ring before it drains),
 * then prints "produced=N dropped=M".
 */
#include "tickscope_probe.h"

#define LEGS 3
static const tsp_point POINTS[] = {
    {"md.rx", NULL, TSP_CLOCK_TSC, 0},
    {"md.decoded", "feed", TSP_CLOCK_TSC, 0},
    {"book.updated", "book", TSP_CLOCK_TSC, 0},
    {"signal", "strategy", TSP_CLOCK_TSC, 0},
    {"risk.checked", "risk", TSP_CLOCK_TSC, 0},
    {"order.encoded", "encode", TSP_CLOCK_TSC, TSP_POINT_LEG},
    {"order.tx", "send", TSP_CLOCK_TSC, TSP_POINT_TRADE},
    {"ack.rx", "order_rtt", TSP_CLOCK_TSC, 0},
};
static const char *const DIMS[] = {"venue", "symbol", "side"};
static const char *const VENUES[] = {"XNAS", "BATS", "ARCA"};
static const char *const SIDES[] = {"buy", "sell"};

int main(int argc, char **argv) {
    uint64_t traces = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000;
    uint64_t capacity = argc > 2 ? strtoull(argv[2], NULL, 10) : (1u << 16);
    uint64_t trace_base = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    tsp_ring ring;
    if (tsp_open_dims(&ring, "fanout", POINTS, 8, DIMS, 3, capacity) != 0) {
        perror("tsp_open");
        return 1;
    }
    uint16_t venue[3], symbol[16], side[2];
    char name[16];
    for (int k = 0; k < 3; k++)
        venue[k] = tsp_intern(&ring, 0, VENUES[k]);
    for (int k = 0; k < 16; k++) {
        snprintf(name, sizeof name, "SYM%02d", k);
        symbol[k] = tsp_intern(&ring, 1, name);
    }
    for (int k = 0; k < 2; k++)
        side[k] = tsp_intern(&ring, 2, SIDES[k]);
    uint64_t produced = 0;
    for (uint64_t i = 0; i < traces; i++) {
        uint64_t id = trace_base + i;
        for (uint32_t p = 0; p < 5; p++)
            produced += (uint64_t)tsp_record(&ring, p, id, 0, p == 1 ? tsp_dims(0, symbol[i % 16], 0, 0) : 0);
        for (uint16_t leg = 0; leg < LEGS; leg++) {
            uint64_t order = tsp_dims(venue[(i + leg) % 3], 0, side[leg % 2], 0);
            produced += (uint64_t)tsp_record(&ring, 5, id, leg, order);
            produced += (uint64_t)tsp_record(&ring, 6, id, leg, 0);
            produced += (uint64_t)tsp_record(&ring, 7, id, leg, 0);
        }
        if ((i & 0xffff) == 0)
            tsp_heartbeat(&ring);
    }
    uint64_t dropped = *ring.dropped;
    tsp_close(&ring);
    printf("produced=%llu dropped=%llu\n", (unsigned long long)produced, (unsigned long long)dropped);
    return 0;
}
