//! Built without the `enable` feature the API stays and does nothing: no file, no stamps, no cost.
#![cfg(not(feature = "enable"))]

use tickscope_probe::{Error, PointWriter, TickWriter, ENABLED};

#[test]
#[allow(clippy::assertions_on_constants)] // ENABLED is the constant under test
fn writers_without_probes_are_empty_and_create_no_ring() {
    assert!(!ENABLED);
    assert_eq!(std::mem::size_of::<PointWriter>(), 0);
    assert_eq!(std::mem::size_of::<TickWriter>(), 0);
    let dir = std::env::temp_dir().join(format!("tickscope-probe-disabled-{}", std::process::id()));
    let mut p = PointWriter::open_in(&dir, "x", &["a", "b"], 4).unwrap();
    let mut t = TickWriter::open_in(&dir, "y", &["a"], 4).unwrap();
    for k in 0..10 {
        assert!(p.record(0, k, 0, 0));
        t.stamp(0);
        assert!(t.commit(k, 0, 0));
    }
    p.heartbeat();
    assert_eq!((p.written(), p.dropped(), p.now()), (0, 0, 0));
    assert_eq!(p.path(), std::path::Path::new(""));
    assert!(!dir.exists(), "a build without probes never touches the ring directory");
}

#[test]
fn without_probes_bad_arguments_are_still_refused() {
    assert!(matches!(PointWriter::open("x", &["a"], 3), Err(Error::Capacity(3))));
    assert!(TickWriter::open("x", &["a", "a"], 4).is_err());
}
