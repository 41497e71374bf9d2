//! The bytes a writer leaves in its ring file, read back without the crate's own accessors.
#![cfg(feature = "enable")]

use std::path::{Path, PathBuf};
use tickscope_probe::layout as L;
use tickscope_probe::{ClockDomain, Error, Point, PointWriter, TickWriter};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("tickscope-probe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn cstr(b: &[u8]) -> &str {
    std::str::from_utf8(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]).unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// The documented offsets of probe/layout.py, written out as numbers (the diagram's ruler).
#[test]
fn offsets_are_the_documented_ones() {
    let documented = [
        (L::OFF_MAGIC, 0),
        (L::OFF_VERSION, 8),
        (L::OFF_KIND, 12),
        (L::OFF_RECORD_SIZE, 16),
        (L::OFF_N_POINTS, 20),
        (L::OFF_CAPACITY, 24),
        (L::OFF_CLOCK_DOMAIN, 32),
        (L::OFF_WRITER_PID, 36),
        (L::OFF_WRITER_TID, 40),
        (L::OFF_FLAGS, 44),
        (L::OFF_CREATED_MONO_NS, 48),
        (L::OFF_CREATED_REAL_NS, 56),
        (L::OFF_DATA_OFFSET, 64),
        (L::OFF_WRITER_NAME, 72),
        (L::OFF_HEAD, 128),
        (L::OFF_DROPPED_FULL, 136),
        (L::OFF_WRITER_HEARTBEAT_NS, 144),
        (L::OFF_WRITER_CLOSED, 152),
        (L::OFF_TAIL, 256),
        (L::OFF_READER_HEARTBEAT_NS, 264),
        (L::OFF_READER_PID, 272),
        (L::OFF_CALIB_COUNT, 384),
        (L::OFF_CALIB_ENTRIES, 392),
        (L::OFF_POINT_TABLE, 1024),
        (L::POINT_ENTRY_SIZE, 96),
        (L::OFF_DIM_NAMES, 7168),
        (L::OFF_DIM_COUNT, 7296),
        (L::OFF_DIM_VALUES, 8192),
        (L::DATA_OFFSET, 139264),
        (L::POINT_RECORD_SIZE, 32),
        (L::tick_record_size(5), 64),
    ];
    for (i, (ours, doc)) in documented.iter().enumerate() {
        assert_eq!(ours, doc, "entry {i}");
    }
    assert_eq!(L::MAGIC.to_le_bytes(), *b"TSCOPE01");
    assert_eq!(std::mem::size_of::<L::PointRecord>(), 32);
}

#[test]
fn header_and_point_table_as_written() {
    let dir = TempDir::new("header");
    let points = [
        Point::new("md.rx").clock(ClockDomain::Realtime),
        Point::new("md.decoded").stage("feed"),
        Point::new("order.tx").stage("send").trade(),
        Point::new("ack.rx"),
    ];
    let w = PointWriter::open_in(&dir.0, "hdr test/1", &points, 1 << 4).unwrap();
    let path = w.path().to_path_buf();
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("hdr_test_1.") && name.ends_with(".ring"), "{name}");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let b = read(&path);
    assert_eq!(b.len(), L::ring_file_size(16, 32));
    assert_eq!(u64_at(&b, L::OFF_MAGIC), L::MAGIC);
    assert_eq!(u32_at(&b, L::OFF_VERSION), L::LAYOUT_VERSION);
    assert_eq!(u32_at(&b, L::OFF_KIND), L::KIND_POINT);
    assert_eq!(u32_at(&b, L::OFF_RECORD_SIZE), 32);
    assert_eq!(u32_at(&b, L::OFF_N_POINTS), 4);
    assert_eq!(u64_at(&b, L::OFF_CAPACITY), 16);
    assert_eq!(u32_at(&b, L::OFF_CLOCK_DOMAIN), w.clock() as u32);
    assert_eq!(u32_at(&b, L::OFF_WRITER_PID), std::process::id());
    assert_eq!(u64_at(&b, L::OFF_DATA_OFFSET), L::DATA_OFFSET as u64);
    assert_eq!(cstr(&b[L::OFF_WRITER_NAME..L::OFF_WRITER_NAME + L::WRITER_NAME_SIZE]), "hdr test/1");
    assert!(u64_at(&b, L::OFF_WRITER_HEARTBEAT_NS) > 0);
    // One pair at open; on a TSC the calibrator thread stores a second one 20 ms later, so that
    // opening never sleeps (waited for here, not timed: the host may be slow).
    let expect_pairs = if w.clock() == ClockDomain::Tsc { 2 } else { 1 };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while u32_at(&read(&path), L::OFF_CALIB_COUNT) < expect_pairs {
        assert!(std::time::Instant::now() < deadline, "no second calibration pair");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let b = read(&path);
    assert_eq!(u32_at(&b, L::OFF_CALIB_COUNT), expect_pairs);
    if expect_pairs == 2 {
        let raw = |k: usize| u64_at(&b, L::OFF_CALIB_ENTRIES + k * L::CALIB_ENTRY_SIZE + 8);
        assert!(raw(1) - raw(0) >= 20_000_000, "the second pair is 20 ms after the first");
    }
    let first = L::OFF_CALIB_ENTRIES;
    assert!(u64_at(&b, first + 8) > 0 && u64_at(&b, first + 16) > 0 && u64_at(&b, first + 24) > 0);
    let table: Vec<(String, String, u32, u32)> = (0..4)
        .map(|i| {
            let e = L::OFF_POINT_TABLE + i * L::POINT_ENTRY_SIZE;
            (
                cstr(&b[e..e + L::POINT_NAME_SIZE]).to_string(),
                cstr(&b[e + L::POINT_NAME_SIZE..e + L::POINT_NAME_SIZE + L::POINT_STAGE_SIZE]).to_string(),
                u32_at(&b, e + 88),
                u32_at(&b, e + 92),
            )
        })
        .collect();
    let native = w.clock() as u32;
    assert_eq!(
        table,
        vec![
            ("md.rx".into(), "".into(), L::CLOCK_REALTIME, 0),
            ("md.decoded".into(), "feed".into(), native, 0),
            ("order.tx".into(), "send".into(), native, L::POINT_TRADE),
            ("ack.rx".into(), "".into(), native, 0),
        ]
    );
    // Play the collector attaching (its pid in the header): the ring then stays for it at close.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&std::process::id().to_le_bytes(), L::OFF_READER_PID as u64).unwrap();
    }
    w.close();
    assert_eq!(u64_at(&read(&path), L::OFF_WRITER_CLOSED), 1);
    assert_eq!(u32_at(&read(&path), L::OFF_CALIB_COUNT), expect_pairs + 1, "close heartbeats");
}

#[test]
fn point_records_in_order_then_the_full_ring_drops_the_newest_and_counts() {
    let dir = TempDir::new("pointfull");
    let mut w = PointWriter::open_in(&dir.0, "full", &["a", "b"], 4).unwrap();
    let published: Vec<bool> = (0..10)
        .map(|k| w.record_ts(k % 2, 100 + k as u64, 1000 + k as u64, k as u16 + 7, k as u64))
        .collect();
    assert_eq!(published, [true, true, true, true, false, false, false, false, false, false]);
    assert_eq!((w.written(), w.dropped()), (4, 6));
    let b = read(w.path());
    assert_eq!((u64_at(&b, L::OFF_HEAD), u64_at(&b, L::OFF_DROPPED_FULL)), (4, 6));
    for k in 0..4 {
        let r = L::DATA_OFFSET + 32 * k;
        assert_eq!(u64_at(&b, r), 1000 + k as u64, "the oldest records stay: drop-newest");
        assert_eq!(u64_at(&b, r + 8), 100 + k as u64);
        assert_eq!(u32_at(&b, r + 16), (k as u32 % 2) | ((k as u32 + 7) << 16), "point u16, then leg u16");
        assert_eq!(u64_at(&b, r + 24), k as u64, "the dims word");
    }
}

#[test]
fn tick_records_drop_when_full_and_land_again_once_drained() {
    let dir = TempDir::new("tickfull");
    let mut w = TickWriter::open_in(&dir.0, "ticks", &["a", "b", "c"], 2).unwrap();
    for k in 0..5u64 {
        w.stamp_ts(0, 10 * k + 1);
        w.stamp_ts(2, 10 * k + 3); // "b" not reached: stays 0
        w.commit(k, 5, 7);
    }
    assert_eq!((w.written(), w.dropped()), (2, 3));
    let rsize = L::tick_record_size(3);
    let b = read(w.path());
    for k in 0..2u64 {
        let r = L::DATA_OFFSET + rsize * k as usize;
        let got: Vec<u64> = (0..6).map(|i| u64_at(&b, r + 8 * i)).collect();
        assert_eq!(got, [10 * k + 1, 0, 10 * k + 3, k, 5, 7]);
    }
    // Play the collector: zero both slots, then release them through tail.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(w.path()).unwrap();
        f.seek(SeekFrom::Start(L::DATA_OFFSET as u64)).unwrap();
        f.write_all(&vec![0u8; 2 * rsize]).unwrap();
        f.seek(SeekFrom::Start(L::OFF_TAIL as u64)).unwrap();
        f.write_all(&2u64.to_le_bytes()).unwrap();
    }
    // The tick in progress began on the full ring (scratch): it lands now that room appeared.
    w.stamp_ts(1, 55);
    assert!(w.commit(99, 0, 0));
    assert_eq!((w.written(), w.dropped()), (3, 3));
    let b = read(w.path());
    let r = L::DATA_OFFSET; // head 2 of capacity 2: slot 0 again
    let got: Vec<u64> = (0..6).map(|i| u64_at(&b, r + 8 * i)).collect();
    assert_eq!(got, [0, 55, 0, 99, 0, 0], "a dropped tick's stamps do not leak into the next");
}

#[test]
fn bad_capacity_is_an_error_naming_it() {
    let dir = TempDir::new("cap");
    for cap in [0u64, 1, 3, 6, 1000] {
        let e = PointWriter::open_in(&dir.0, "x", &["a"], cap).err().expect("must fail");
        assert!(matches!(e, Error::Capacity(c) if c == cap));
        assert_eq!(e.to_string(), format!("ring capacity must be a power of 2 >= 2: capacity={cap}"));
        assert!(TickWriter::open_in(&dir.0, "x", &["a"], cap).is_err());
    }
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "no ring file left behind");
}

#[test]
fn bad_points_are_errors() {
    let dir = TempDir::new("points");
    let none: [&str; 0] = [];
    let long = "x".repeat(49);
    let many: Vec<String> = (0..65).map(|i| format!("p{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for (points, needle) in [
        (&none[..], "at least one"),
        (&["a", "a"][..], "unique"),
        (&[long.as_str()][..], "1..48 bytes"),
        (&[""][..], "1..48 bytes"),
        (&many[..], "at most 64"),
    ] {
        let e = PointWriter::open_in(&dir.0, "x", points, 4).err().expect("must fail");
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn unwritable_ring_directory_is_an_error_naming_it() {
    let dir = TempDir::new("unwritable");
    let file = dir.0.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let target = file.join("rings"); // below a regular file: fails even for root
    let e = PointWriter::open_in(&target, "x", &["a"], 4).err().expect("must fail");
    assert!(matches!(e, Error::RingDir { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(target.to_str().unwrap()) && msg.contains("TICKSCOPE_RING_DIR"), "{msg}");
    assert!(!msg.contains('\n'));
}

#[test]
#[should_panic(expected = "point id 2 not declared: this ring has 2 points")]
fn undeclared_point_panics_like_an_index() {
    let dir = TempDir::new("undeclared");
    let mut w = PointWriter::open_in(&dir.0, "x", &["a", "b"], 4).unwrap();
    w.record(2, 1, 0, 0);
}
