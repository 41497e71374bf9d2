/*
 * tickscope_probe.h: a header-only C/C++ probe writer for tickscope rings.
 *
 * Compile with the include directory tickscope prints:
 *     cc -O2 $(python -m tickscope.probe --cflags) my_feed.c      (or: -I"$(tickscope include-dir)")
 * Include it first (it defines _GNU_SOURCE for clock_gettime and syscall), or build with gcc's
 * default -std=gnu11 / any C++ standard.
 *
 * Declare the points the way tickscope.probe.Point does in Python (name, stage, clock, trade):
 *
 *     enum { MD_RX, DECODED, ORDER_TX, ACK_RX, N_POINTS };
 *     static const tsp_point POINTS[N_POINTS] = {
 *         {"md.rx", NULL, TSP_CLOCK_TSC, 0},
 *         {"md.decoded", "feed", TSP_CLOCK_TSC, 0},               // stage = the span ending here
 *         {"order.tx", "send", TSP_CLOCK_TSC, TSP_POINT_TRADE},   // tick-to-trade ends here
 *         {"ack.rx", "order_rtt", TSP_CLOCK_TSC, 0},              // later: a stage of its own
 *     };
 *     tsp_ring ring;
 *     int rc = tsp_open_points(&ring, "feed", POINTS, N_POINTS, 1u << 16);
 *     if (rc != 0) { fprintf(stderr, "tsp_open: %s\n", strerror(-rc)); return 1; }
 *     tsp_record(&ring, DECODED, seq, 0, 0);   // rdtsc + one 32-byte store + a release store of head
 *     tsp_heartbeat(&ring);                 // from an idle path, every 0.1-1 s: liveness + calibration
 *     tsp_close(&ring);
 *
 * One ring per thread (single producer): every call on a ring comes from the thread that opened it.
 * Build with -pthread (tsp_open starts a short-lived thread for the ring's second calibration pair;
 * with glibc >= 2.34 the pthread functions are in libc anyway), and keep a tsp_ring where it is from
 * tsp_open to tsp_close (that thread holds its address).
 * A full ring drops the record and counts it; the writer never blocks and never allocates after
 * tsp_open. tsp_record stamps raw TSC ticks; the collector fits the TSC rate over the calibration
 * pairs this writer stores (at open, at every heartbeat and at close).
 *
 * Legs (one tick, several orders): flag the fan-out point TSP_POINT_LEG; every record of it and of
 * the points after it names its leg (tsp_record(&ring, ORDER_TX, seq, leg, dims)), the points
 * before it are shared by the trace. Dimensions: open with tsp_open_dims (up to 4 names), intern
 * each value once off the hot path (tsp_intern), pass the ids packed by tsp_dims() with records.
 *
 * The byte layout is the one documented in probe/layout.py (KIND_POINT rings, 32-byte records);
 * tests/probe/test_c_probe.py checks every mirrored constant below against it and reads gcc- and
 * g++-built writers from Python, so the two cannot drift apart silently.
 */
#ifndef TICKSCOPE_PROBE_H
#define TICKSCOPE_PROBE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#define TSP_LAYOUT_VERSION 2u
#define TSP_KIND_POINT 1u
#define TSP_CLOCK_TSC 1u
#define TSP_CLOCK_MONOTONIC 2u
#define TSP_CLOCK_REALTIME 3u
#define TSP_POINT_TRADE 1u /* point flag: tick-to-trade ends at this point */
#define TSP_POINT_LEG 2u   /* point flag: the fan-out; this point and those after it are per leg */

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
#define TSP_OFF_DIM_NAMES 7168
#define TSP_DIM_NAME_SIZE 32
#define TSP_MAX_DIMS 4
#define TSP_OFF_DIM_COUNT 7296
#define TSP_OFF_DIM_VALUES 8192
#define TSP_DIM_VALUE_SIZE 28
#define TSP_DIM_ENTRY_SIZE 32
#define TSP_MAX_DIM_VALUES 4096
#define TSP_DIM_SLOT_BITS 16
#define TSP_DATA_OFFSET 139264 /* TSP_OFF_DIM_VALUES + TSP_MAX_DIM_VALUES * TSP_DIM_ENTRY_SIZE */
#define TSP_RECORD_SIZE 32
#define TSP_MAX_LEG 65535u

/* dims: four u16 dimension value ids, slot k = bits 16k..16k+15, 0 = none (see tsp_dims). */
typedef struct {
    uint64_t ts;
    uint64_t trace_id;
    uint16_t point_id;
    uint16_t leg;
    uint32_t thread_id;
    uint64_t dims;
} tsp_record_t;

#ifdef __cplusplus
static_assert(sizeof(tsp_record_t) == TSP_RECORD_SIZE, "record must be 32 bytes");
#else
_Static_assert(sizeof(tsp_record_t) == TSP_RECORD_SIZE, "record must be 32 bytes");
#endif

/*
 * A declared probe point: the C form of tickscope.probe.Point, field for field the ring's point
 * table entry (name, stage, clock domain, flags).
 *   name   "component.event", 1..48 bytes, unique within the ring; records refer to it by its index.
 *   stage  the span that ends at this point (e.g. "feed" at "md.decoded"); NULL or "" names the stage
 *          after the point itself; at most 40 bytes. The first point's stage is never used.
 *   clock  the domain of the stamps recorded for this point: TSP_CLOCK_TSC (tsp_record, or 0),
 *          TSP_CLOCK_MONOTONIC or TSP_CLOCK_REALTIME (nanoseconds, recorded with tsp_record_ts,
 *          e.g. a kernel SO_TIMESTAMPING receive stamp on a REALTIME point).
 *   flags  TSP_POINT_TRADE marks where tick-to-trade ends (default: the last declared point), so
 *          points after it (acks, fills) are measured as their own stages, outside tick-to-trade.
 */
typedef struct {
    const char *name;
    const char *stage;
    uint32_t clock;
    uint32_t flags;
} tsp_point;

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
    uint32_t n_dims;
    uint32_t n_values; /* interned so far (the header's count, kept locally) */
    char path[512];
    /* The calibration slots are written by the writer's thread (heartbeat, close) and, once, by
     * the ring's calibrator thread (the second pair, 20 ms after open): the lock orders them. */
    pthread_mutex_t calib_lock;
    pthread_cond_t calib_wake; /* tsp_close wakes the calibrator early */
    pthread_t calibrator;
    int calibrator_started;
    int closing;
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

/* Clock-read sequences per calibration pair, at most, and a bracket narrow enough to end them:
 * a sequence reads in ~150 ns, a preemption or a hypervisor exit takes microseconds. Not ring
 * ABI: the collector reads one pair whichever way it was chosen. */
static const int tsp__pair_tries = 5;
static const uint64_t tsp__pair_narrow_ns = 1000;

/* One (tsc, monotonic_raw, monotonic, realtime) pair, TSC read between two RAW reads; the caller
 * holds r->calib_lock. Each sequence is bracketed by a third RAW read after the REALTIME one and
 * a preemption anywhere widens it: the first bracket under tsp__pair_narrow_ns is stored, else the
 * narrowest of tsp__pair_tries (one preempted pair of a ring that never heartbeats tilts the collector's
 * rate, fitted over two pairs 20 ms apart). */
static inline void tsp__calibration_pair_locked(tsp_ring *r) {
    uint64_t tsc = 0, raw = 0, mono = 0, real = 0, best_width = UINT64_MAX;
    for (int i = 0; i < tsp__pair_tries; i++) {
        uint64_t raw0 = tsp_clock_ns(CLOCK_MONOTONIC_RAW);
        uint64_t t = tsp_rdtscp();
        uint64_t raw1 = tsp_clock_ns(CLOCK_MONOTONIC_RAW);
        uint64_t m = tsp_clock_ns(CLOCK_MONOTONIC);
        uint64_t re = tsp_clock_ns(CLOCK_REALTIME);
        uint64_t raw2 = tsp_clock_ns(CLOCK_MONOTONIC_RAW);
        if (raw2 - raw0 < best_width) {
            best_width = raw2 - raw0;
            tsc = t;
            raw = raw0 + (raw1 - raw0) / 2;
            mono = m - (raw1 - raw0) / 2;
            real = re;
        }
        if (raw2 - raw0 < tsp__pair_narrow_ns)
            break;
    }
    uint32_t count;
    memcpy(&count, r->base + TSP_OFF_CALIB_COUNT, 4);
    uint8_t *e = r->base + TSP_OFF_CALIB_ENTRIES + (count % TSP_CALIB_SLOTS) * TSP_CALIB_ENTRY_SIZE;
    tsp_put64(e, tsc);
    tsp_put64(e + 8, raw);
    tsp_put64(e + 16, mono);
    tsp_put64(e + 24, real);
    __atomic_store_n((uint32_t *)(r->base + TSP_OFF_CALIB_COUNT), count + 1, __ATOMIC_RELEASE);
}

static inline void tsp_calibration_pair(tsp_ring *r) {
    pthread_mutex_lock(&r->calib_lock);
    tsp__calibration_pair_locked(r);
    pthread_mutex_unlock(&r->calib_lock);
}

/* Two pairs 20 ms apart give the collector a TSC rate even for a run that never heartbeats (and
 * a collector that cannot read the TSC itself); far enough apart that clock-read jitter (~100 ns)
 * is a few ppm of rate. */
static const uint64_t tsp__second_pair_after_ns = 20000000ull;

/* The ring's calibrator: stores the second pair 20 ms after open, off the
 * writer's thread, so that opening never sleeps (the thread that opens may be an event loop's);
 * returns at once when tsp_close comes first (close stores a pair itself). */
static inline void *tsp__calibrator(void *arg) {
    tsp_ring *r = (tsp_ring *)arg;
    struct timespec due;
    clock_gettime(CLOCK_MONOTONIC, &due);
    uint64_t ns = (uint64_t)due.tv_nsec + tsp__second_pair_after_ns;
    due.tv_sec += (time_t)(ns / 1000000000ull);
    due.tv_nsec = (long)(ns % 1000000000ull);
    pthread_mutex_lock(&r->calib_lock);
    while (!r->closing) {
        if (pthread_cond_timedwait(&r->calib_wake, &r->calib_lock, &due) == ETIMEDOUT) {
            tsp__calibration_pair_locked(r);
            break;
        }
    }
    pthread_mutex_unlock(&r->calib_lock);
    return NULL;
}

static inline const char *tsp_ring_dir(void) {
    const char *d = getenv("TICKSCOPE_RING_DIR");
    return (d && *d) ? d : "/dev/shm/tickscope";
}

/* Creates the ring directory and its missing parents (mkdir -p), mode 0700. 0 or -errno. */
static inline int tsp__mkdirs(const char *dir) {
    char path[512];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return -ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        path[i] = c;
    }
    return 0;
}

/* Point i of either declaration style: full descriptors, or bare names (TSC, no stage, no flags). */
static inline tsp_point tsp__point_at(const tsp_point *points, const char *const *names, uint32_t i) {
    if (points)
        return points[i];
    tsp_point p;
    p.name = names[i];
    p.stage = NULL;
    p.clock = TSP_CLOCK_TSC;
    p.flags = 0;
    return p;
}

/* Everything tsp_open checks before it creates a file: nothing is left behind by a bad call. */
static inline int tsp__check(const char *name, const tsp_point *points, const char *const *names,
                             uint32_t n_points, const char *const *dims, uint32_t n_dims, uint64_t capacity) {
    if (!name || !*name || (!points && !names) || n_points == 0 || n_points > TSP_MAX_POINTS)
        return -EINVAL;
    if (n_dims > TSP_MAX_DIMS || (n_dims && !dims))
        return -EINVAL;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (!dims[i] || !*dims[i] || strlen(dims[i]) > TSP_DIM_NAME_SIZE)
            return -EINVAL;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(dims[j], dims[i]) == 0)
                return -EINVAL;
    }
    if (capacity < 2 || (capacity & (capacity - 1)) ||
        capacity > ((uint64_t)SIZE_MAX - TSP_DATA_OFFSET) / TSP_RECORD_SIZE)
        return -EINVAL;
    for (uint32_t i = 0; i < n_points; i++) {
        tsp_point p = tsp__point_at(points, names, i);
        if (!p.name || !*p.name || strlen(p.name) > TSP_POINT_NAME_SIZE)
            return -EINVAL;
        if (p.stage && strlen(p.stage) > TSP_POINT_STAGE_SIZE)
            return -EINVAL;
        if (p.clock > TSP_CLOCK_REALTIME || (p.flags & ~(TSP_POINT_TRADE | TSP_POINT_LEG)))
            return -EINVAL;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(tsp__point_at(points, names, j).name, p.name) == 0)
                return -EINVAL;
    }
    return 0;
}

static inline int tsp__open(tsp_ring *r, const char *name, const tsp_point *points, const char *const *names,
                            uint32_t n_points, const char *const *dims, uint32_t n_dims, uint64_t capacity) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->calib_lock, NULL);
    int rc = tsp__check(name, points, names, n_points, dims, n_dims, capacity);
    if (rc == 0)
        rc = tsp__mkdirs(tsp_ring_dir());
    if (rc != 0) {
        errno = -rc;
        return rc;
    }
    /* The file name keeps [A-Za-z0-9_-] of the writer name, as the Python writers do. */
    char safe[TSP_WRITER_NAME_SIZE];
    size_t k = 0;
    for (; name[k] && k < sizeof safe - 1; k++) {
        char c = name[k];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        safe[k] = ok ? c : '_';
    }
    safe[k] = '\0';
    const char *dir = tsp_ring_dir();
    pid_t pid = getpid();
    r->thread_id = (uint32_t)syscall(SYS_gettid);
    int fd = -1;
    for (int n = 0; n < 1000 && fd < 0; n++) {
        int len = n ? snprintf(r->path, sizeof r->path, "%s/%s.%d.%u.%d.ring", dir, safe, (int)pid, r->thread_id, n)
                    : snprintf(r->path, sizeof r->path, "%s/%s.%d.%u.ring", dir, safe, (int)pid, r->thread_id);
        if (len < 0 || (size_t)len >= sizeof r->path) {
            errno = ENAMETOOLONG;
            return -ENAMETOOLONG;
        }
        fd = open(r->path, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 && errno != EEXIST)
            return -errno;
    }
    if (fd < 0)
        return -EEXIST;
    r->size = TSP_DATA_OFFSET + capacity * TSP_RECORD_SIZE;
    if (ftruncate(fd, (off_t)r->size) != 0) {
        rc = -errno;
        close(fd);
        unlink(r->path);
        errno = -rc;
        return rc;
    }
    void *base = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    rc = base == MAP_FAILED ? -errno : 0;
    close(fd);
    if (rc != 0) {
        unlink(r->path);
        errno = -rc;
        return rc;
    }
    r->base = (uint8_t *)base;
    uint8_t *b = r->base;
    for (uint32_t i = 0; i < n_points; i++) {
        tsp_point p = tsp__point_at(points, names, i);
        uint8_t *e = b + TSP_OFF_POINT_TABLE + i * TSP_POINT_ENTRY_SIZE;
        memcpy(e, p.name, strlen(p.name)); /* NUL padded by the fresh file; a 48-byte name fills it */
        if (p.stage)
            memcpy(e + TSP_POINT_NAME_SIZE, p.stage, strlen(p.stage));
        tsp_put32(e + TSP_POINT_NAME_SIZE + TSP_POINT_STAGE_SIZE, p.clock ? p.clock : TSP_CLOCK_TSC);
        tsp_put32(e + TSP_POINT_NAME_SIZE + TSP_POINT_STAGE_SIZE + 4, p.flags);
    }
    for (uint32_t k = 0; k < n_dims; k++)
        memcpy(b + TSP_OFF_DIM_NAMES + k * TSP_DIM_NAME_SIZE, dims[k], strlen(dims[k]));
    r->n_dims = n_dims;
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
    memcpy(b + TSP_OFF_WRITER_NAME, name, strnlen(name, TSP_WRITER_NAME_SIZE - 1));
    r->records = (tsp_record_t *)(b + TSP_DATA_OFFSET);
    r->head = (uint64_t *)(b + TSP_OFF_HEAD);
    r->dropped = (uint64_t *)(b + TSP_OFF_DROPPED_FULL);
    r->writer_heartbeat = (uint64_t *)(b + TSP_OFF_WRITER_HEARTBEAT_NS);
    r->tail = (const uint64_t *)(b + TSP_OFF_TAIL);
    r->capacity = capacity;
    r->mask = capacity - 1;
    r->limit = capacity;
    r->n_points = n_points;
    tsp_calibration_pair(r);
    *r->writer_heartbeat = tsp_clock_ns(CLOCK_MONOTONIC);
    /* The magic last, released: a reader that sees it sees the whole header. */
    __atomic_store_n((uint64_t *)(b + TSP_OFF_MAGIC), TSP_MAGIC, __ATOMIC_RELEASE);
    /* The second pair comes from the calibrator, 20 ms from now. If no thread can be started the
     * ring still works: the collector pools its own pairs, the heartbeats' and the closing one. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->calib_wake, &attr);
    pthread_condattr_destroy(&attr);
    r->calibrator_started = pthread_create(&r->calibrator, NULL, tsp__calibrator, r) == 0;
    return 0;
}

/*
 * Opens a ring for the calling thread: creates <dir>/<name>.<pid>.<tid>.ring (dir is
 * $TICKSCOPE_RING_DIR, set by `tickscope profile`, else /dev/shm/tickscope; created if missing),
 * declares the points, stores a calibration pair, publishes the header and starts a thread that
 * stores a second pair 20 ms later (so tsp_open never sleeps: ~10-20 us).
 *
 * capacity: records the ring holds, a power of two >= 2; the file is 8 KiB + 32 bytes x capacity.
 * Size it for the longest pause of the collector (it drains every few ms; a loaded host can stall it
 * for 100 ms or more): records per second x 0.25 s, e.g. 8 points x 50k ticks/s -> 1u << 17 (4 MiB).
 * When the ring is full a record is dropped and counted (the session reports dropped_ring_full).
 *
 * Returns 0, or a negative errno value (also left in errno, so perror() works):
 *   -EINVAL        capacity not a power of two >= 2; no points or more than TSP_MAX_POINTS (64);
 *                  a point name empty, longer than 48 bytes or repeated; a stage longer than 40
 *                  bytes; an unknown clock or flag; a NULL or empty writer name
 *   -EACCES, -EROFS, -ENOTDIR, -ENOENT, ...   the ring directory cannot be created or written
 *   -ENAMETOOLONG  the ring directory's path is too long (511 bytes at most with the file name)
 *   -ENOSPC, -ENOMEM, -EFBIG   the file cannot be sized or mapped (/dev/shm full: a smaller capacity)
 * On any error no file is left behind and the ring stays closed (tsp_close on it is a no-op).
 */
static inline int tsp_open_points(tsp_ring *r, const char *name, const tsp_point *points, uint32_t n_points,
                                  uint64_t capacity) {
    return tsp__open(r, name, points, NULL, n_points, NULL, 0, capacity);
}

/* tsp_open_points declaring dimensions too: dims[k] (1..32 bytes, unique, at most TSP_MAX_DIMS) is
 * slot k of every record's dims word. Same return values (-EINVAL for a bad dimension list). */
static inline int tsp_open_dims(tsp_ring *r, const char *name, const tsp_point *points, uint32_t n_points,
                                const char *const *dims, uint32_t n_dims, uint64_t capacity) {
    return tsp__open(r, name, points, NULL, n_points, dims, n_dims, capacity);
}

/* tsp_open_points with bare names: every point TSC, each stage named after its end point, and
 * tick-to-trade ending at the last point. Same return values. */
static inline int tsp_open(tsp_ring *r, const char *name, const char *const *points, uint32_t n_points,
                           uint64_t capacity) {
    return tsp__open(r, name, NULL, points, n_points, NULL, 0, capacity);
}

/*
 * The id of `value` in dimension slot `dim`, interning it into the ring's value table the first
 * time (a linear search of what this writer interned: call it off the hot path, once per value,
 * and keep the id). Returns 1..TSP_MAX_DIM_VALUES, or 0 when `dim` is not declared, `value` is
 * empty or longer than 28 bytes, or the table is full (records then carry no value for it).
 */
static inline uint16_t tsp_intern(tsp_ring *r, uint32_t dim, const char *value) {
    size_t len = value ? strlen(value) : 0;
    if (!r->base || dim >= r->n_dims || len == 0 || len > TSP_DIM_VALUE_SIZE)
        return 0;
    for (uint32_t i = 0; i < r->n_values; i++) {
        const uint8_t *e = r->base + TSP_OFF_DIM_VALUES + i * TSP_DIM_ENTRY_SIZE;
        uint16_t slot;
        memcpy(&slot, e, 2);
        if (slot == dim && strncmp((const char *)e + 4, value, TSP_DIM_VALUE_SIZE) == 0 &&
            (len == TSP_DIM_VALUE_SIZE || e[4 + len] == 0))
            return (uint16_t)(i + 1);
    }
    if (r->n_values >= TSP_MAX_DIM_VALUES)
        return 0;
    uint8_t *e = r->base + TSP_OFF_DIM_VALUES + r->n_values * TSP_DIM_ENTRY_SIZE;
    uint16_t slot = (uint16_t)dim;
    memcpy(e, &slot, 2);
    memcpy(e + 4, value, len);
    r->n_values++;
    /* Released: a collector that reads the count reads the entry. */
    __atomic_store_n((uint32_t *)(r->base + TSP_OFF_DIM_COUNT), r->n_values, __ATOMIC_RELEASE);
    return (uint16_t)r->n_values;
}

/* The dims word of value ids by slot (0 = no value for that dimension). */
static inline uint64_t tsp_dims(uint16_t d0, uint16_t d1, uint16_t d2, uint16_t d3) {
    return (uint64_t)d0 | (uint64_t)d1 << 16 | (uint64_t)d2 << 32 | (uint64_t)d3 << 48;
}

/*
 * Records point_id of trace_id with a stamp taken earlier or elsewhere. ts is in the clock declared
 * for that point: TSC ticks (tsp_rdtsc()/tsp_rdtscp() of this host) for a TSC point, nanoseconds of
 * CLOCK_MONOTONIC or CLOCK_REALTIME for those (a kernel SO_TIMESTAMPING stamp is REALTIME). Use it
 * to stamp the moment a packet arrived although the trace id is only known after decoding it.
 * point_id is the point's index in the declaration; leg names the leg (order) of the trace a
 * per-leg point belongs to (0 for a trace of one order; ignored on shared points); dims attaches
 * dimension values (tsp_dims of tsp_intern ids, 0 = none). Returns 1, or 0 when the ring was full
 * and the record was dropped (and counted).
 */
static inline int tsp_record_ts(tsp_ring *r, uint32_t point_id, uint64_t trace_id, uint64_t ts, uint16_t leg,
                                uint64_t dims) {
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
    rec->point_id = (uint16_t)point_id;
    rec->leg = leg;
    rec->thread_id = r->thread_id;
    rec->dims = dims;
    r->head_local = h + 1;
    __atomic_store_n(r->head, h + 1, __ATOMIC_RELEASE);
    return 1;
}

/* The hot path, a TSC point stamped now: rdtsc + one 32-byte record + a release store of head
 * (~10 ns, `tickscope bench` shows it next to a bare rdtsc). Returns 1, or 0 if dropped. */
static inline int tsp_record(tsp_ring *r, uint32_t point_id, uint64_t trace_id, uint16_t leg, uint64_t dims) {
    return tsp_record_ts(r, point_id, trace_id, tsp_rdtsc(), leg, dims);
}

/*
 * Liveness and calibration, from an idle path of the writer's thread, every 0.1-1 s (~100 ns, off
 * the hot path). It stamps the writer's heartbeat, so the collector tells a quiet writer from a dead
 * one, and stores a calibration pair (TSC read between two CLOCK_MONOTONIC_RAW reads, with
 * MONOTONIC and REALTIME), which is what keeps TSC conversion true over a long run: without
 * heartbeats the collector has only the two opening pairs, 20 ms apart, and their rate error
 * grows with the session into tens of microseconds of offset after seconds (stages between two TSC
 * points are affected least, stages against MONOTONIC or REALTIME points most).
 */
static inline void tsp_heartbeat(tsp_ring *r) {
    tsp_calibration_pair(r);
    __atomic_store_n(r->writer_heartbeat, tsp_clock_ns(CLOCK_MONOTONIC), __ATOMIC_RELEASE);
}

/* Stores a last calibration pair, marks the ring cleanly closed and unmaps it; the file stays for
 * the collector to drain and remove. Call it before the thread or process ends: a ring never closed
 * is reported as a writer that died. Safe to call twice, or on a ring whose tsp_open failed. */
static inline void tsp_close(tsp_ring *r) {
    if (!r->base)
        return;
    if (r->calibrator_started) {
        pthread_mutex_lock(&r->calib_lock);
        r->closing = 1;
        pthread_cond_signal(&r->calib_wake);
        pthread_mutex_unlock(&r->calib_lock);
        pthread_join(r->calibrator, NULL);
        r->calibrator_started = 0;
    }
    tsp_heartbeat(r);
    __atomic_store_n((uint64_t *)(r->base + TSP_OFF_WRITER_CLOSED), 1, __ATOMIC_RELEASE);
    munmap(r->base, r->size);
    r->base = NULL;
    pthread_cond_destroy(&r->calib_wake);
    pthread_mutex_destroy(&r->calib_lock);
}

#endif /* TICKSCOPE_PROBE_H */
