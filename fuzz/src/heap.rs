//! A counting global allocator: the Rust heap live now and its peak, so that a harness can
//! bound what one input costs. An allocation that would take the live heap past
//! [`HARD_CAP`] is refused: the process aborts there, with the guilty allocation on the
//! stack, and libFuzzer keeps the input as a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Live Rust heap allowed at any moment.
pub const HARD_CAP: usize = 256 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Takes `size` more bytes on the books; false (nothing taken) past the cap.
fn take(size: usize) -> bool {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    if live > HARD_CAP {
        LIVE.fetch_sub(size, Relaxed);
        return false;
    }
    PEAK.fetch_max(live, Relaxed);
    true
}

fn give(size: usize) {
    LIVE.fetch_sub(size, Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; only the books are kept here.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !take(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if p.is_null() {
            give(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !take(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            give(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        give(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !take(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > old {
                give(new_size - old);
            }
        } else if new_size < old {
            give(old - new_size);
        }
        p
    }
}

/// Runs `f`; returns its result and the peak of the Rust heap above what was live when
/// it started (one thread runs at a time in the harnesses).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed).saturating_sub(base))
}

/// Rust heap live now.
pub fn live() -> usize {
    LIVE.load(Relaxed)
}
