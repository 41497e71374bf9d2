/*
 * A two-thread C subject whose stages cross rings, with known lengths in TSC ticks:
 *   c_two_rings TRACES HEARTBEAT_EVERY [LATE]
 * The feed thread has a ring of its own (md.rx, md.decoded, signal), the order thread another
 * (signal, declared to say where its points sit and never stamped, then order.tx), as a real
 * feed handler and order gateway would. Per trace i, stamps are explicit (tsp_record_ts):
 *   md.rx = rdtsc, md.decoded = + FEED, signal = + strategy(i)   (feed thread, in-ring spans)
 *   order.tx = signal + send(i)                                  (order thread: a span across rings)
 * The feed thread hands (i, signal's ticks) to the order thread through a queue. Both threads
 * call tsp_heartbeat every HEARTBEAT_EVERY traces (0: never). LATE = feed opens the feed ring
 * 100 ms after the order ring (the order thread's ring is then the first the collector sees);
 * LATE = orders the other way round; anything else: both at once. Prints the constants first.
 */
#include "tickscope_probe.h"

#include <pthread.h>
#include <sched.h>

#define FEED 15000ull
#define STRATEGY 60000ull
#define SPIKE 600000ull
#define SPIKE_EVERY 50
#define SEND_BASE 2600ull /* ~1 us at 2.6 GHz */
#define SEND_SPREAD 1000ull
#define PACE 100000ull /* ticks between traces: ~40 us, so a run of 20,000 traces lasts ~1 s */

static uint64_t strategy(uint64_t i) { return i % SPIKE_EVERY == 0 ? SPIKE : STRATEGY; }
static uint64_t send_ticks(uint64_t i) { return SEND_BASE + (i * 7919) % SEND_SPREAD; }

static const tsp_point FEED_POINTS[] = {
    {"md.rx", NULL, TSP_CLOCK_TSC, 0},
    {"md.decoded", "feed", TSP_CLOCK_TSC, 0},
    {"signal", "strategy", TSP_CLOCK_TSC, 0},
};
static const tsp_point ORDER_POINTS[] = {
    {"signal", NULL, TSP_CLOCK_TSC, 0}, /* never stamped here: orders order.tx after signal */
    {"order.tx", "send", TSP_CLOCK_TSC, TSP_POINT_TRADE},
};

static uint64_t traces, heartbeat_every;
static const char *late = "";
static uint64_t *signal_ticks;
static uint64_t published; /* traces whose signal_ticks entry is written (release/acquire) */
static uint64_t consumed;  /* traces the order thread has recorded: the feed stays within AHEAD */
#define AHEAD 256          /* as a real order queue is bounded: no trace waits long on a descheduled thread */
static int failed;

static void pause_ms(unsigned ms) {
    struct timespec t = {0, (long)ms * 1000000L};
    nanosleep(&t, NULL);
}

static void *order_thread(void *arg) {
    (void)arg;
    tsp_ring ring;
    if (strcmp(late, "orders") == 0)
        pause_ms(100);
    if (tsp_open_points(&ring, "orders", ORDER_POINTS, 2, 1u << 16) != 0) {
        perror("tsp_open_points orders");
        failed = 1;
        return NULL;
    }
    for (uint64_t i = 1; i <= traces; i++) {
        while (__atomic_load_n(&published, __ATOMIC_ACQUIRE) < i)
            sched_yield();
        while (!tsp_record_ts(&ring, 1, i, signal_ticks[i] + send_ticks(i), 0, 0))
            sched_yield(); /* ring full: the collector is behind; a known-delay subject loses nothing */
        __atomic_store_n(&consumed, i, __ATOMIC_RELEASE);
        if (heartbeat_every && i % heartbeat_every == 0)
            tsp_heartbeat(&ring);
    }
    tsp_close(&ring);
    return NULL;
}

int main(int argc, char **argv) {
    traces = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
    heartbeat_every = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
    late = argc > 3 ? argv[3] : "";
    signal_ticks = calloc(traces + 1, sizeof *signal_ticks);
    printf("feed=%llu strategy=%llu spike=%llu spike_every=%d send_base=%llu send_spread=%llu\n", FEED, STRATEGY,
           SPIKE, SPIKE_EVERY, SEND_BASE, SEND_SPREAD);
    fflush(stdout);
    pthread_t orders;
    pthread_create(&orders, NULL, order_thread, NULL);
    if (strcmp(late, "feed") == 0)
        pause_ms(100);
    tsp_ring ring;
    if (tsp_open_points(&ring, "feed", FEED_POINTS, 3, 1u << 16) != 0) {
        perror("tsp_open_points feed");
        return 1;
    }
    for (uint64_t i = 1; i <= traces; i++) {
        while (i > AHEAD && __atomic_load_n(&consumed, __ATOMIC_ACQUIRE) < i - AHEAD)
            sched_yield();
        uint64_t ts0 = tsp_rdtsc();
        uint64_t ts2 = ts0 + FEED + strategy(i);
        while (!tsp_record_ts(&ring, 0, i, ts0, 0, 0))
            sched_yield();
        while (!tsp_record_ts(&ring, 1, i, ts0 + FEED, 0, 0))
            sched_yield();
        while (!tsp_record_ts(&ring, 2, i, ts2, 0, 0))
            sched_yield();
        signal_ticks[i] = ts2;
        __atomic_store_n(&published, i, __ATOMIC_RELEASE);
        if (heartbeat_every && i % heartbeat_every == 0)
            tsp_heartbeat(&ring);
        while (tsp_rdtsc() < ts0 + PACE) {
        }
    }
    pthread_join(orders, NULL);
    tsp_close(&ring);
    printf("traces=%llu\n", (unsigned long long)traces);
    return failed;
}
