//! The few libc functions the probe needs, declared here: std already links libc, and declaring
//! them keeps the crate free of dependencies (it must build offline from a path dependency).

use std::os::raw::{c_int, c_long, c_void};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: c_long,
}

pub const CLOCK_REALTIME: c_int = 0;
pub const CLOCK_MONOTONIC: c_int = 1;
pub const CLOCK_MONOTONIC_RAW: c_int = 4;

const PROT_READ: c_int = 1;
const PROT_WRITE: c_int = 2;
const MAP_SHARED: c_int = 1;

#[cfg(target_arch = "x86_64")]
const SYS_GETTID: c_long = 186;
#[cfg(target_arch = "aarch64")]
const SYS_GETTID: c_long = 178;
#[cfg(target_arch = "riscv64")]
const SYS_GETTID: c_long = 178;

extern "C" {
    fn clock_gettime(clock: c_int, tp: *mut Timespec) -> c_int;
    fn mmap(addr: *mut c_void, len: usize, prot: c_int, flags: c_int, fd: c_int, off: i64) -> *mut c_void;
    fn munmap(addr: *mut c_void, len: usize) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
    fn syscall(number: c_long, ...) -> c_long;
}

/// One read of a POSIX clock in ns (vDSO on Linux: no system call for these clock ids).
#[inline]
pub fn clock_ns(clock: c_int) -> u64 {
    let mut t = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; clock_gettime writes only into it.
    unsafe { clock_gettime(clock, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The kernel's id of the calling thread (what `threading.get_native_id()` and `gettid()` give).
pub fn thread_id() -> u32 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
    {
        // SAFETY: gettid takes no arguments, cannot fail and touches no memory.
        unsafe { syscall(SYS_GETTID) as u32 }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
    {
        std::process::id()
    }
}

/// Maps `len` bytes of `fd` shared and writable; None with the OS error when mmap fails.
pub fn map_shared(fd: c_int, len: usize) -> std::io::Result<*mut u8> {
    // SAFETY: a fresh mapping chosen by the kernel (addr = NULL) aliases no Rust object.
    let p = unsafe { mmap(std::ptr::null_mut(), len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) };
    if p as isize == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(p as *mut u8)
    }
}

/// Unmaps a mapping made by `map_shared`.
///
/// # Safety
/// `base`/`len` must be exactly one live mapping from `map_shared`, and nothing may touch it after.
pub unsafe fn unmap(base: *mut u8, len: usize) {
    munmap(base as *mut c_void, len);
}

/// Whether process `pid` exists (signal 0: nothing is sent; EPERM means it exists as another user).
pub fn process_exists(pid: u32) -> bool {
    const EPERM: i32 = 1;
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let sent = unsafe { kill(pid as c_int, 0) } == 0;
    sent || std::io::Error::last_os_error().raw_os_error() == Some(EPERM)
}
