/*
 * A C subject whose stages have known lengths in TSC ticks, for checking the collector's
 * conversion against the truth:
 *   c_known_spans TRACES HEARTBEATS [MODE]
 * Each trace writes md.rx, md.decoded, signal, order.tx with explicit stamps (tsp_record_ts):
 *   ts0 = rdtsc, ts1 = ts0 + FEED, ts2 = ts1 + STRATEGY (SPIKE every SPIKE_EVERY-th trace),
 *   ts3 = ts2 + SEND  (ticks; printed on stdout so a test can hold the session against them).
 * HEARTBEATS times during the run, a trace is split: its first two records, a wait until the
 * collector has drained them (converted with the fit of that moment), tsp_heartbeat (a new
 * calibration pair: the collector refits before it converts the rest), then the rest. So every
 * heartbeat is a refit in the middle of a trace, whatever the host's speed. After the fifth
 * heartbeat one deliberately perturbed pair (MONOTONIC 300 us off) is written, which the fit
 * must leave out (a 120 ms pause keeps it among the pairs the collector fits over).
 * MODE: normal | bad-point (every 10th trace also records point id 7, beyond the 4 declared) |
 *       bad-version (the ring claims layout version 99; it is published complete, never half-written).
 */
#include "tickscope_probe.h"

#define FEED 15000ull
#define STRATEGY 60000ull
#define SPIKE 600000ull
#define SEND 6000ull
#define SPIKE_EVERY 50

static const char *const POINTS[] = {"md.rx", "md.decoded", "signal", "order.tx"};

/* A calibration pair as tsp_calibration_pair writes it, but with MONOTONIC(_RAW) off by offset_ns. */
static void perturbed_pair(tsp_ring *r, uint64_t offset_ns) {
    uint64_t raw = tsp_clock_ns(CLOCK_MONOTONIC_RAW);
    uint64_t tsc = tsp_rdtscp();
    uint64_t mono = tsp_clock_ns(CLOCK_MONOTONIC);
    uint64_t real = tsp_clock_ns(CLOCK_REALTIME);
    uint32_t count;
    memcpy(&count, r->base + TSP_OFF_CALIB_COUNT, 4);
    uint8_t *e = r->base + TSP_OFF_CALIB_ENTRIES + (count % TSP_CALIB_SLOTS) * TSP_CALIB_ENTRY_SIZE;
    tsp_put64(e, tsc);
    tsp_put64(e + 8, raw + offset_ns);
    tsp_put64(e + 16, mono + offset_ns);
    tsp_put64(e + 24, real + offset_ns);
    __atomic_store_n((uint32_t *)(r->base + TSP_OFF_CALIB_COUNT), count + 1, __ATOMIC_RELEASE);
}

/* Wait (at most 10 s: a hang guard) until the collector has drained everything written so far. */
static void wait_drained(tsp_ring *r) {
    for (int i = 0; i < 50000 && __atomic_load_n(r->tail, __ATOMIC_ACQUIRE) < r->head_local; i++) {
        struct timespec t = {0, 200000L};
        nanosleep(&t, NULL);
    }
}

static void pause_ms(unsigned ms) {
    struct timespec t = {0, (long)ms * 1000000L};
    nanosleep(&t, NULL);
}

/* Open the ring in a staging directory, patch its header, then move it where the collector looks:
 * a reader never sees the ring before the patch. */
static int open_with_version(tsp_ring *r, uint32_t version) {
    char final_dir[400], staging[420];
    snprintf(final_dir, sizeof final_dir, "%s", tsp_ring_dir());
    snprintf(staging, sizeof staging, "%s/staging", final_dir);
    mkdir(final_dir, 0700);
    setenv("TICKSCOPE_RING_DIR", staging, 1);
    if (tsp_open(r, "cknown", POINTS, 4, 1u << 16) != 0)
        return -1;
    tsp_put32(r->base + TSP_OFF_VERSION, version);
    char target[600];
    const char *base = strrchr(r->path, '/');
    snprintf(target, sizeof target, "%s%s", final_dir, base);
    if (rename(r->path, target) != 0)
        return -1;
    snprintf(r->path, sizeof r->path, "%s", target);
    rmdir(staging);
    setenv("TICKSCOPE_RING_DIR", final_dir, 1);
    return 0;
}

int main(int argc, char **argv) {
    uint64_t traces = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000;
    uint64_t heartbeats = argc > 2 ? strtoull(argv[2], NULL, 10) : 40;
    const char *mode = argc > 3 ? argv[3] : "normal";
    int bad_point = strcmp(mode, "bad-point") == 0;
    tsp_ring ring;
    int rc = strcmp(mode, "bad-version") == 0 ? open_with_version(&ring, 99)
                                               : tsp_open(&ring, "cknown", POINTS, 4, 1u << 16);
    if (rc != 0) {
        perror("tsp_open");
        return 1;
    }
    printf("feed=%llu strategy=%llu spike=%llu send=%llu spike_every=%d\n", FEED, STRATEGY, SPIKE, SEND,
           SPIKE_EVERY);
    fflush(stdout);
    uint64_t split_every = heartbeats ? traces / (heartbeats + 1) : 0;
    uint64_t beats = 0, dropped = 0;
    for (uint64_t i = 1; i <= traces; i++) {
        uint64_t ts0 = tsp_rdtsc();
        uint64_t ts1 = ts0 + FEED;
        uint64_t ts2 = ts1 + (i % SPIKE_EVERY == 0 ? SPIKE : STRATEGY);
        uint64_t ts3 = ts2 + SEND;
        dropped += !tsp_record_ts(&ring, 0, i, ts0, 0, 0);
        dropped += !tsp_record_ts(&ring, 1, i, ts1, 0, 0);
        if (split_every && i % split_every == 0 && beats < heartbeats) {
            wait_drained(&ring);
            tsp_heartbeat(&ring);
            if (++beats == 5) {
                perturbed_pair(&ring, 300000);
                pause_ms(120);
            }
        }
        dropped += !tsp_record_ts(&ring, 2, i, ts2, 0, 0);
        dropped += !tsp_record_ts(&ring, 3, i, ts3, 0, 0);
        if (bad_point && i % 10 == 0)
            dropped += !tsp_record_ts(&ring, 7, i, ts3 + 1, 0, 0);
        /* keep the stamps in the past of the next trace's: stamps of one ring never go back */
        while (tsp_rdtsc() < ts3 + 1) {
        }
    }
    tsp_close(&ring);
    printf("traces=%llu heartbeats=%llu dropped=%llu\n", (unsigned long long)traces, (unsigned long long)beats,
           (unsigned long long)dropped);
    return 0;
}
