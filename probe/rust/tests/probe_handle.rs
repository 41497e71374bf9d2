//! `Probe` across threads: a ring per thread, dimension ids that mean the same value in every
//! ring, rings closed when threads exit or the probe drops.
#![cfg(feature = "enable")]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tickscope_probe::layout as L;
use tickscope_probe::{dims, points, Probe};

points! {
    enum P { Tx = "order.tx" }
}

fn rings(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// The ring's interned values as (slot, value), in id order.
fn values(ring: &Path) -> Vec<(u16, String)> {
    let b = std::fs::read(ring).unwrap();
    (0..u32_at(&b, L::OFF_DIM_COUNT) as usize)
        .map(|i| {
            let e = L::OFF_DIM_VALUES + i * L::DIM_ENTRY_SIZE;
            let v = &b[e + 4..e + 4 + L::DIM_VALUE_SIZE];
            let len = v.iter().position(|&c| c == 0).unwrap_or(v.len());
            (u16::from_le_bytes([b[e], b[e + 1]]), String::from_utf8(v[..len].to_vec()).unwrap())
        })
        .collect()
}

#[test]
fn dimension_ids_mean_the_same_value_in_every_threads_ring() {
    let dir = std::env::temp_dir().join(format!("tickscope-probe-handle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let probe = Probe::<P>::builder("orders").dims(&["venue"]).dir(&dir).capacity(16).build().unwrap();
    assert!(rings(&dir).is_empty(), "no ring before a record");
    let xnas = probe.intern("venue", "XNAS");
    let (go_a, wait_a) = mpsc::channel::<u16>();
    let (done, recorded) = mpsc::channel::<()>();
    let (release, hold) = mpsc::channel::<()>();
    let hold = std::sync::Arc::new(std::sync::Mutex::new(hold));
    let a = {
        let (probe, done, hold) = (probe.clone(), done.clone(), hold.clone());
        std::thread::spawn(move || {
            for id in wait_a {
                assert!(probe.record_with(P::Tx, 1, 0, dims([id, 0, 0, 0])));
                done.send(()).unwrap();
            }
            hold.lock().unwrap().recv().unwrap(); // keep the ring open until it was read
        })
    };
    go_a.send(xnas).unwrap();
    recorded.recv().unwrap();
    let bats = probe.intern("venue", "BATS"); // after thread A's ring opened
    assert_eq!((xnas, bats), (1, 2));
    let b = {
        let (probe, done, hold) = (probe.clone(), done.clone(), hold.clone());
        std::thread::spawn(move || {
            assert!(probe.record_with(P::Tx, 2, 0, dims([bats, 0, 0, 0])));
            done.send(()).unwrap();
            hold.lock().unwrap().recv().unwrap();
        })
    };
    recorded.recv().unwrap();
    go_a.send(bats).unwrap(); // thread A catches up with the value interned since it opened
    recorded.recv().unwrap();
    drop(go_a);
    let both = vec![(0, "XNAS".to_string()), (0, "BATS".to_string())];
    let opened = rings(&dir);
    assert_eq!(opened.len(), 2, "a ring per thread");
    for ring in &opened {
        assert_eq!(values(ring), both, "{}", ring.display());
    }
    release.send(()).unwrap();
    release.send(()).unwrap();
    a.join().unwrap();
    b.join().unwrap();
    // Threads exited: their rings are closed, and removed unless a collector was announced
    // (tickscope's own test run announces itself, to read what writers leave).
    let left = rings(&dir);
    if std::env::var_os("TICKSCOPE_COLLECTOR_PID").is_none() {
        assert!(left.is_empty(), "nobody will drain them: removed at close");
    }
    for ring in left {
        let b = std::fs::read(&ring).unwrap();
        assert_eq!(b[L::OFF_WRITER_CLOSED], 1, "{}", ring.display());
    }
    assert_eq!(probe.lost(), 0);
    drop(probe);
    let _ = std::fs::remove_dir_all(&dir);
}
