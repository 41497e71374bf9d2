/*
 * A C subject that fans out and branches, with known lengths in TSC ticks:   c_legs TRACES
 * Two rings of one thread declare two paths after md.decoded:
 *   "quotes": md.rx, md.decoded (feed), quote.handled (quote), order.tx (send, trade, leg), ack.rx (order_rtt)
 *   "trades": md.decoded, trade.handled (trade_msg), order.tx        (declared: the second path)
 * The rule: an even trace i is a quote (two legs: buy and sell on XNAS), an odd one a trade
 * message (one leg: a hedge on BATS). Stamps are explicit (tsp_record_ts), per trace i:
 *   md.rx = rdtsc, md.decoded = + FEED, then quote.handled = + QUOTE or trade.handled = + TRADE,
 *   order.tx of leg k = + send(i, k), ack.rx = order.tx + ACK + k
 * Dimensions venue and side ride on each leg's order.tx; symbol (S0, S1, S2 by i % 3) on md.decoded,
 * a point the legs share, so every leg of the trace carries it. Prints the constants first.
 */
#include "tickscope_probe.h"

#include <sched.h>

#define FEED 15000ull
#define QUOTE 40000ull
#define TRADE 90000ull
#define ACK 100000ull
#define PACE 200000ull

static uint64_t send_ticks(uint64_t i, uint64_t k) { return 2000 + 500 * k + (i * 7919) % 1000; }

enum { MD_RX, MD_DECODED, QUOTE_HANDLED, ORDER_TX, ACK_RX };
static const tsp_point QUOTE_POINTS[] = {
    {"md.rx", NULL, TSP_CLOCK_TSC, 0},
    {"md.decoded", "feed", TSP_CLOCK_TSC, 0},
    {"quote.handled", "quote", TSP_CLOCK_TSC, 0},
    {"order.tx", "send", TSP_CLOCK_TSC, TSP_POINT_TRADE | TSP_POINT_LEG},
    {"ack.rx", "order_rtt", TSP_CLOCK_TSC, 0},
};
static const tsp_point TRADE_POINTS[] = {
    {"md.decoded", NULL, TSP_CLOCK_TSC, 0}, /* never stamped here: where the path branches */
    {"trade.handled", "trade_msg", TSP_CLOCK_TSC, 0},
    {"order.tx", NULL, TSP_CLOCK_TSC, 0},
};
static const char *const DIMS[] = {"venue", "side", "symbol"};

static int put(tsp_ring *r, uint32_t point, uint64_t trace, uint64_t ts, uint16_t leg, uint64_t dims) {
    while (!tsp_record_ts(r, point, trace, ts, leg, dims))
        sched_yield(); /* ring full: the collector is behind; a known-delay subject loses nothing */
    return 1;
}

int main(int argc, char **argv) {
    uint64_t traces = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000;
    printf("feed=%llu quote=%llu trade=%llu ack=%llu\n", FEED, QUOTE, TRADE, ACK);
    fflush(stdout);
    tsp_ring quotes, trades;
    if (tsp_open_dims(&quotes, "quotes", QUOTE_POINTS, 5, DIMS, 3, 1u << 16) != 0 ||
        tsp_open_points(&trades, "trades", TRADE_POINTS, 3, 1u << 14) != 0) {
        perror("tsp_open");
        return 1;
    }
    uint64_t xnas_buy = tsp_dims(tsp_intern(&quotes, 0, "XNAS"), tsp_intern(&quotes, 1, "buy"), 0, 0);
    uint64_t xnas_sell = tsp_dims(tsp_intern(&quotes, 0, "XNAS"), tsp_intern(&quotes, 1, "sell"), 0, 0);
    uint64_t bats_buy = tsp_dims(tsp_intern(&quotes, 0, "BATS"), tsp_intern(&quotes, 1, "buy"), 0, 0);
    const uint64_t symbol[] = {tsp_dims(0, 0, tsp_intern(&quotes, 2, "S0"), 0),
                               tsp_dims(0, 0, tsp_intern(&quotes, 2, "S1"), 0),
                               tsp_dims(0, 0, tsp_intern(&quotes, 2, "S2"), 0)};
    for (uint64_t i = 1; i <= traces; i++) {
        uint64_t ts0 = tsp_rdtsc();
        uint64_t decoded = ts0 + FEED;
        put(&quotes, MD_RX, i, ts0, 0, 0);
        put(&quotes, MD_DECODED, i, decoded, 0, symbol[i % 3]);
        uint64_t handled = decoded + (i % 2 == 0 ? QUOTE : TRADE);
        if (i % 2 == 0)
            put(&quotes, QUOTE_HANDLED, i, handled, 0, 0);
        else
            put(&trades, 1, i, handled, 0, 0);
        uint64_t n_legs = i % 2 == 0 ? 2 : 1;
        for (uint64_t k = 0; k < n_legs; k++) {
            uint64_t tx = handled + send_ticks(i, k);
            put(&quotes, ORDER_TX, i, tx, (uint16_t)k, i % 2 ? bats_buy : k ? xnas_sell : xnas_buy);
            put(&quotes, ACK_RX, i, tx + ACK + k, (uint16_t)k, 0);
        }
        if (i % 1000 == 0) {
            tsp_heartbeat(&quotes);
            tsp_heartbeat(&trades);
        }
        while (tsp_rdtsc() < ts0 + PACE) {
        }
    }
    tsp_close(&trades);
    tsp_close(&quotes);
    printf("traces=%llu\n", (unsigned long long)traces);
    return 0;
}
