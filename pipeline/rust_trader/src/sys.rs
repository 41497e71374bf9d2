//! The few libc calls std does not wrap: SO_TIMESTAMPING, recvmsg with control data (including
//! the error queue), signals and clocks. Declared here so the crate needs nothing but std.

use std::os::raw::{c_int, c_long, c_void};

pub const SOL_SOCKET: c_int = 1;
pub const SO_RCVBUF: c_int = 8;
pub const SO_TIMESTAMPING: c_int = 37; // SO_TIMESTAMPING_OLD: 64-bit timespecs on 64-bit hosts
pub const SCM_TIMESTAMPING: c_int = SO_TIMESTAMPING;
pub const MSG_DONTWAIT: c_int = 0x40;
pub const MSG_ERRQUEUE: c_int = 0x2000;
pub const EAGAIN: i32 = 11;
pub const EINTR: i32 = 4;

pub const TX_SOFTWARE: c_int = 1 << 1;
pub const RX_HARDWARE: c_int = 1 << 2;
pub const RX_SOFTWARE: c_int = 1 << 3;
pub const SOFTWARE: c_int = 1 << 4;
pub const RAW_HARDWARE: c_int = 1 << 6;
pub const OPT_ID: c_int = 1 << 7;
pub const OPT_TSONLY: c_int = 1 << 11;
pub const SO_EE_ORIGIN_TIMESTAMPING: u8 = 4;
pub const SCM_TSTAMP_SND: u32 = 0;

pub const CLOCK_REALTIME: c_int = 0;
pub const CLOCK_MONOTONIC: c_int = 1;
pub const SIGINT: c_int = 2;
pub const SIGTERM: c_int = 15;

#[repr(C)]
pub struct Iovec {
    pub base: *mut c_void,
    pub len: usize,
}

#[repr(C)]
pub struct Msghdr {
    pub name: *mut c_void,
    pub namelen: u32,
    pub iov: *mut Iovec,
    pub iovlen: usize,
    pub control: *mut c_void,
    pub controllen: usize,
    pub flags: c_int,
}

#[repr(C)]
struct Cmsghdr {
    len: usize,
    level: c_int,
    kind: c_int,
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: c_long,
}

extern "C" {
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    fn recvmsg(fd: c_int, msg: *mut Msghdr, flags: c_int) -> isize;
    fn clock_gettime(clock: c_int, tp: *mut Timespec) -> c_int;
    fn signal(signum: c_int, handler: usize) -> usize;
}

pub fn set_int_option(fd: c_int, name: c_int, value: c_int) -> std::io::Result<()> {
    // SAFETY: value is a live c_int of the length passed.
    let rc = unsafe { setsockopt(fd, SOL_SOCKET, name, &value as *const c_int as *const c_void, 4) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn clock_ns(clock: c_int) -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: ts is a valid timespec.
    unsafe { clock_gettime(clock, &mut ts) };
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

pub fn install_stop_handler(handler: extern "C" fn(c_int)) {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        signal(SIGINT, handler as usize);
        signal(SIGTERM, handler as usize);
    }
}

pub fn ignore_sigterm() {
    // SAFETY: SIG_IGN is 1.
    unsafe { signal(SIGTERM, 1) };
}

const CONTROL_LEN: usize = 256;

#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

fn cmsg_align(n: usize) -> usize {
    (n + 7) & !7
}

/// Walks the control messages: calls `f(level, type, data)` for each.
fn each_cmsg(control: &[u8], len: usize, mut f: impl FnMut(c_int, c_int, &[u8])) {
    let hdr = std::mem::size_of::<Cmsghdr>();
    let mut off = 0;
    let len = len.min(control.len());
    while off + hdr <= len {
        // SAFETY: off + hdr <= len <= control.len(); the buffer is 8-aligned and off stays aligned.
        let c = unsafe { &*(control.as_ptr().add(off) as *const Cmsghdr) };
        if c.len < hdr || off + c.len > len {
            break;
        }
        f(c.level, c.kind, &control[off + hdr..off + c.len]);
        off += cmsg_align(c.len);
    }
}

fn read_u64(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    u64::from_ne_bytes(b)
}

fn read_u32(d: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[at..at + 4]);
    u32::from_ne_bytes(b)
}

/// scm_timestamping: three timespecs (software, deprecated, raw hardware); the hardware one when
/// the NIC gave it, else the software one; 0 if neither.
fn stamp_ns(d: &[u8]) -> u64 {
    if d.len() < 48 {
        return 0;
    }
    let (s_sec, s_nsec, h_sec, h_nsec) = (read_u64(d, 0), read_u64(d, 8), read_u64(d, 32), read_u64(d, 40));
    if h_sec != 0 || h_nsec != 0 {
        h_sec * 1_000_000_000 + h_nsec
    } else {
        s_sec * 1_000_000_000 + s_nsec
    }
}

pub enum Recv {
    Data(usize, u64),
    WouldBlock,
    Error(std::io::Error),
}

/// One datagram into `buf` with its kernel receive stamp (REALTIME ns, 0 if none).
pub fn recv_stamped(fd: c_int, buf: &mut [u8]) -> Recv {
    let mut control = Control([0; CONTROL_LEN]);
    let mut iov = Iovec { base: buf.as_mut_ptr() as *mut c_void, len: buf.len() };
    let mut msg = Msghdr {
        name: std::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.0.as_mut_ptr() as *mut c_void,
        controllen: CONTROL_LEN,
        flags: 0,
    };
    // SAFETY: every pointer in msg is to a live buffer of the stated length.
    let n = unsafe { recvmsg(fd, &mut msg, MSG_DONTWAIT) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(EAGAIN) | Some(EINTR) => Recv::WouldBlock,
            _ => Recv::Error(e),
        };
    }
    let mut ts = 0;
    each_cmsg(&control.0, msg.controllen, |level, kind, data| {
        if level == SOL_SOCKET && kind == SCM_TIMESTAMPING {
            ts = stamp_ns(data);
        }
    });
    Recv::Data(n as usize, ts)
}

/// Every transmit stamp waiting in the socket's error queue, as (OPT_ID key, REALTIME ns).
pub fn drain_tx_stamps(fd: c_int, mut f: impl FnMut(u32, u64)) -> usize {
    let mut got = 0;
    loop {
        let mut control = Control([0; CONTROL_LEN]);
        let mut msg = Msghdr {
            name: std::ptr::null_mut(),
            namelen: 0,
            iov: std::ptr::null_mut(),
            iovlen: 0,
            control: control.0.as_mut_ptr() as *mut c_void,
            controllen: CONTROL_LEN,
            flags: 0,
        };
        // SAFETY: as in recv_stamped; no data buffer (OPT_TSONLY entries carry none).
        let n = unsafe { recvmsg(fd, &mut msg, MSG_ERRQUEUE | MSG_DONTWAIT) };
        if n < 0 {
            return got;
        }
        let (mut ts, mut key) = (0u64, None);
        each_cmsg(&control.0, msg.controllen, |level, kind, data| {
            if level == SOL_SOCKET && kind == SCM_TIMESTAMPING {
                ts = stamp_ns(data);
            } else if data.len() >= 16 {
                // sock_extended_err: errno u32, origin u8, type u8, code u8, pad u8, info u32, data u32
                if data[4] == SO_EE_ORIGIN_TIMESTAMPING && read_u32(data, 8) == SCM_TSTAMP_SND {
                    key = Some(read_u32(data, 12));
                }
            }
        });
        if let (true, Some(k)) = (ts != 0, key) {
            got += 1;
            f(k, ts);
        }
    }
}
