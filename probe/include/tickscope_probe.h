/*
 * tickscope_probe.h: a header-only C probe writer for tickscope rings.
 *
 * The byte layout is the one documented in probe/layout.py (KIND_POINT rings, 32-byte records);
 * tests/test_c_probe.py compiles a writer against this header and reads it from Python, so the
 * two stay in lock step. Usage:
 *
 *     tsp_ring ring;
 *     const char *points[] = {"md.rx", "md.decoded", "order.tx"};
 *     if (tsp_open(&ring, "feed", points, 3, 1u << 16) != 0) { perror("tsp_open"); }
 *     tsp_record(&ring, 0, seq, 0);      // rdtsc + 32-byte store + release store of head
 *     tsp_heartbeat(&ring);              // from an idle path: liveness + a calibration pair
 *     tsp_close(&ring);
 *
 * One writer per thread (single producer). A full ring drops the record and counts it; the
 * writer never blocks and never allocates after tsp_open. Stamps are raw TSC ticks: the collector
 * fits TSC Hz over the calibration pairs (least squares against CLOCK_MONOTONIC_RAW).
 */
#ifndef TICKSCOPE_PROBE_H
#define TICKSCOPE_PROBE_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

/* Mirrors of probe/layout.py. */
#define TSP_MAGIC 0x313045504F435354ULL /* "TSCOPE01" little endian */
#define TSP_LAYOUT_VERSION 1u
#define TSP_KIND_POINT 1u
#define TSP_CLOCK_TSC 1u
#define TSP_CLOCK_MONOTONIC 2u
#define TSP_CLOCK_REALTIME 3u

#define TSP_OFF_MAGIC 0
#define TSP_OFF_VERSION 8
#define TSP_OFF_KIND 12
#define TSP_OFF_RECORD_SIZE 16
#define TSP_OFF_N_POINTS 20
#define TSP_OFF_CAPACITY 24
#define TSP_OFF_CLOCK_DOMAIN 32
#define TSP_OFF_WRITER_PID 36
#define TSP_OFF_WRITER_TID 40
#define TSP_OFF_FLAGS 44
#define TSP_OFF_CREATED_MONO_NS 48
#define TSP_OFF_CREATED_REAL_NS 56
#define TSP_OFF_DATA_OFFSET 64
#define TSP_OFF_WRITER_NAME 72
#define TSP_WRITER_NAME_SIZE 56
#define TSP_OFF_HEAD 128
#define TSP_OFF_DROPPED_FULL 136
#define TSP_OFF_WRITER_HEARTBEAT_NS 144
#define TSP_OFF_WRITER_CLOSED 152
#define TSP_OFF_TAIL 256
#define TSP_OFF_READER_HEARTBEAT_NS 264
#define TSP_OFF_CALIB_COUNT 384
#define TSP_OFF_CALIB_ENTRIES 392
#define TSP_CALIB_SLOTS 16
#define TSP_CALIB_ENTRY_SIZE 32
#define TSP_OFF_POINT_TABLE 1024
#define TSP_POINT_NAME_SIZE 48
#define TSP_POINT_STAGE_SIZE 40
#define TSP_POINT_ENTRY_SIZE 96
#define TSP_MAX_POINTS 64
#define TSP_DATA_OFFSET 8192
#define TSP_RECORD_SIZE 32

typedef struct {
    uint64_t ts;
    uint64_t trace_id;
    uint32_t point_id;
    uint32_t thread_id;
    uint64_t aux;
} tsp_record_t;

_Static_assert(sizeof(tsp_record_t) == TSP_RECORD_SIZE, "record must be 32 bytes");

typedef struct {
    uint8_t *base;
    size_t size;
    tsp_record_t *records;
    uint64_t *head;       /* producer line */
    uint64_t *dropped;
    uint64_t *writer_heartbeat;
    const uint64_t *tail; /* consumer line */
    uint64_t capacity;
    uint64_t mask;
    uint64_t head_local;  /* producer's own copy: never re-read from shared memory */
    uint64_t limit;       /* head may reach this before tail must be re-read */
    uint32_t thread_id;
    uint32_t n_points;
    char path[512];
} tsp_ring;

static inline uint64_t tsp_rdtsc(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#else
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
#endif
}

/* rdtscp waits for earlier instructions to retire: use it to stamp the *end* of a stage. */
static inline uint64_t tsp_rdtscp(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned aux;
    return __rdtscp(&aux);
#else
    return tsp_rdtsc();
#endif
}

static inline uint64_t tsp_clock_ns(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline void tsp_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void tsp_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* One (tsc, monotonic_raw, monotonic, realtime) pair, TSC read between two RAW reads. */
static inline void tsp_calibration_pair(tsp_ring *r) {
    uint64_t raw0 = tsp_clock_ns(CLOCK_MONOTONIC_RAW);
    uint64_t tsc = tsp_rdtscp();
    uint64_t raw1 = tsp_clock_ns(CLOCK_MONOTONIC_RAW);
    uint64_t mono = tsp_clock_ns(CLOCK_MONOTONIC);
    uint64_t real = tsp_clock_ns(CLOCK_REALTIME);
    uint32_t count;
    memcpy(&count, r->base + TSP_OFF_CALIB_COUNT, 4);
    uint8_t *e = r->base + TSP_OFF_CALIB_ENTRIES + (count % TSP_CALIB_SLOTS) * TSP_CALIB_ENTRY_SIZE;
    tsp_put64(e, tsc);
    tsp_put64(e + 8, raw0 + (raw1 - raw0) / 2);
    tsp_put64(e + 16, mono - (raw1 - raw0) / 2);
    tsp_put64(e + 24, real);
    __atomic_store_n((uint32_t *)(r->base + TSP_OFF_CALIB_COUNT), count + 1, __ATOMIC_RELEASE);
}

static inline const char *tsp_ring_dir(void) {
    const char *d = getenv("TICKSCOPE_RING_DIR");
    return (d && *d) ? d : "/dev/shm/tickscope";
}

/* Creates the ring file and publishes its header. Returns 0, or -1 with errno set. */
static inline int tsp_open(tsp_ring *r, const char *name, const char *const *points, uint32_t n_points,
                           uint64_t capacity) {
    memset(r, 0, sizeof *r);
    if (n_points == 0 || n_points > TSP_MAX_POINTS || capacity < 2 || (capacity & (capacity - 1))) {
        errno = EINVAL;
        return -1;
    }
    const char *dir = tsp_ring_dir();
    mkdir(dir, 0700);
    pid_t pid = getpid();
    r->thread_id = (uint32_t)syscall(SYS_gettid);
    int fd = -1;
    for (int n = 0; n < 1000 && fd < 0; n++) {
        if (n)
            snprintf(r->path, sizeof r->path, "%s/%s.%d.%u.%d.ring", dir, name, (int)pid, r->thread_id, n);
        else
            snprintf(r->path, sizeof r->path, "%s/%s.%d.%u.ring", dir, name, (int)pid, r->thread_id);
        fd = open(r->path, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 && errno != EEXIST)
            return -1;
    }
    if (fd < 0)
        return -1;
    r->size = TSP_DATA_OFFSET + capacity * TSP_RECORD_SIZE;
    if (ftruncate(fd, (off_t)r->size) != 0) {
        close(fd);
        return -1;
    }
    r->base = (uint8_t *)mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (r->base == MAP_FAILED)
        return -1;
    uint8_t *b = r->base;
    for (uint32_t i = 0; i < n_points; i++) {
        uint8_t *e = b + TSP_OFF_POINT_TABLE + i * TSP_POINT_ENTRY_SIZE;
        strncpy((char *)e, points[i], TSP_POINT_NAME_SIZE);
        tsp_put32(e + TSP_POINT_NAME_SIZE + TSP_POINT_STAGE_SIZE, TSP_CLOCK_TSC);
    }
    tsp_put32(b + TSP_OFF_VERSION, TSP_LAYOUT_VERSION);
    tsp_put32(b + TSP_OFF_KIND, TSP_KIND_POINT);
    tsp_put32(b + TSP_OFF_RECORD_SIZE, TSP_RECORD_SIZE);
    tsp_put32(b + TSP_OFF_N_POINTS, n_points);
    tsp_put64(b + TSP_OFF_CAPACITY, capacity);
    tsp_put32(b + TSP_OFF_CLOCK_DOMAIN, TSP_CLOCK_TSC);
    tsp_put32(b + TSP_OFF_WRITER_PID, (uint32_t)pid);
    tsp_put32(b + TSP_OFF_WRITER_TID, r->thread_id);
    tsp_put64(b + TSP_OFF_CREATED_MONO_NS, tsp_clock_ns(CLOCK_MONOTONIC));
    tsp_put64(b + TSP_OFF_CREATED_REAL_NS, tsp_clock_ns(CLOCK_REALTIME));
    tsp_put64(b + TSP_OFF_DATA_OFFSET, TSP_DATA_OFFSET);
    strncpy((char *)b + TSP_OFF_WRITER_NAME, name, TSP_WRITER_NAME_SIZE - 1);
    r->records = (tsp_record_t *)(b + TSP_DATA_OFFSET);
    r->head = (uint64_t *)(b + TSP_OFF_HEAD);
    r->dropped = (uint64_t *)(b + TSP_OFF_DROPPED_FULL);
    r->writer_heartbeat = (uint64_t *)(b + TSP_OFF_WRITER_HEARTBEAT_NS);
    r->tail = (const uint64_t *)(b + TSP_OFF_TAIL);
    r->capacity = capacity;
    r->mask = capacity - 1;
    r->limit = capacity;
    r->n_points = n_points;
    /* Two pairs 20 ms apart give the collector a TSC rate even for a run that never heartbeats. */
    tsp_calibration_pair(r);
    uint64_t until = tsp_clock_ns(CLOCK_MONOTONIC_RAW) + 20000000ull;
    while (tsp_clock_ns(CLOCK_MONOTONIC_RAW) < until) {
    }
    tsp_calibration_pair(r);
    *r->writer_heartbeat = tsp_clock_ns(CLOCK_MONOTONIC);
    /* The magic last, released: a reader that sees it sees the whole header. */
    __atomic_store_n((uint64_t *)(b + TSP_OFF_MAGIC), TSP_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/* Stamp an explicit timestamp (ts in the ring's TSC domain). Returns 1, or 0 if dropped. */
static inline int tsp_record_ts(tsp_ring *r, uint32_t point_id, uint64_t trace_id, uint64_t ts, uint64_t aux) {
    uint64_t h = r->head_local;
    if (__builtin_expect(h >= r->limit, 0)) {
        r->limit = __atomic_load_n(r->tail, __ATOMIC_ACQUIRE) + r->capacity;
        if (h >= r->limit) {
            __atomic_store_n(r->dropped, *r->dropped + 1, __ATOMIC_RELAXED);
            return 0;
        }
    }
    tsp_record_t *rec = &r->records[h & r->mask];
    rec->ts = ts;
    rec->trace_id = trace_id;
    rec->point_id = point_id;
    rec->thread_id = r->thread_id;
    rec->aux = aux;
    r->head_local = h + 1;
    __atomic_store_n(r->head, h + 1, __ATOMIC_RELEASE);
    return 1;
}

/* The hot path: rdtsc + one 32-byte record + a release store of head. */
static inline int tsp_record(tsp_ring *r, uint32_t point_id, uint64_t trace_id, uint64_t aux) {
    return tsp_record_ts(r, point_id, trace_id, tsp_rdtsc(), aux);
}

static inline void tsp_heartbeat(tsp_ring *r) {
    tsp_calibration_pair(r);
    __atomic_store_n(r->writer_heartbeat, tsp_clock_ns(CLOCK_MONOTONIC), __ATOMIC_RELEASE);
}

/* Marks the ring cleanly closed; the file stays for the collector to drain and remove. */
static inline void tsp_close(tsp_ring *r) {
    if (!r->base)
        return;
    tsp_heartbeat(r);
    __atomic_store_n((uint64_t *)(r->base + TSP_OFF_WRITER_CLOSED), 1, __ATOMIC_RELEASE);
    munmap(r->base, r->size);
    r->base = NULL;
}

#endif /* TICKSCOPE_PROBE_H */
