/*
 * tsp_open's second calibration pair, seen from the writer: the header's pair count when tsp_open
 * returns, then once the ring's calibrator stored its pair (waited for, up to a hang guard).
 *   c_second_pair      prints "at_open=N later=M"; the ring stays in $TICKSCOPE_RING_DIR, closed
 */
#include "tickscope_probe.h"

static uint32_t pairs(const tsp_ring *r) {
    return __atomic_load_n((const uint32_t *)(r->base + TSP_OFF_CALIB_COUNT), __ATOMIC_ACQUIRE);
}

int main(void) {
    static const char *const POINTS[] = {"md.rx", "order.tx"};
    tsp_ring ring;
    if (tsp_open(&ring, "second-pair", POINTS, 2, 1u << 4) != 0) {
        perror("tsp_open");
        return 1;
    }
    uint32_t at_open = pairs(&ring);
    tsp_record(&ring, 0, 1, 0, 0);
    tsp_record(&ring, 1, 1, 0, 0);
    uint64_t guard = tsp_clock_ns(CLOCK_MONOTONIC) + 60000000000ull; /* a hang guard, not a bound */
    struct timespec nap = {0, 1000000};
    while (pairs(&ring) == at_open && tsp_clock_ns(CLOCK_MONOTONIC) < guard)
        nanosleep(&nap, NULL);
    printf("at_open=%u later=%u\n", at_open, pairs(&ring));
    tsp_close(&ring);
    return 0;
}
