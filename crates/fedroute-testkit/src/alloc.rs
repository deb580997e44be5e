//! A counting global allocator whose counters are per thread, so that a test
//! measures what its own synchronous code allocates while the other tests of
//! the same binary run in parallel.
//!
//! A test binary installs it once, in its `main.rs`:
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: fedroute_testkit::alloc::Counting = fedroute_testkit::alloc::Counting;
//! ```
//! and measures with [`measure`]. Allocations made by other threads (a
//! runtime's workers, for example) are not seen: measure synchronous code.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// An allocation of at least this many bytes counts as large.
pub const LARGE_ALLOC: usize = 1 << 20;

/// The counting allocator (it delegates to [`System`]).
#[derive(Debug)]
pub struct Counting;

#[derive(Clone, Copy)]
struct Counters {
    /// Bytes asked for (a realloc counts its new size, as a fresh block).
    asked: usize,
    /// Allocations (or reallocs) of at least [`LARGE_ALLOC`] bytes.
    large: usize,
    /// Bytes live now, and their peak since the last [`measure`] began.
    live: isize,
    peak: isize,
}

thread_local! {
    static COUNTERS: Cell<Counters> = const {
        Cell::new(Counters { asked: 0, large: 0, live: 0, peak: 0 })
    };
}

fn update(f: impl FnOnce(&mut Counters)) {
    // `try_with`: a thread being torn down has no counters any more.
    let _ = COUNTERS.try_with(|c| {
        let mut v = c.get();
        f(&mut v);
        v.peak = v.peak.max(v.live);
        c.set(v);
    });
}

fn grew(asked: usize, by: isize) {
    update(|c| {
        c.asked += asked;
        if asked >= LARGE_ALLOC {
            c.large += 1;
        }
        c.live += by;
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the counting only
// touches a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size(), l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        update(|c| c.live -= l.size() as isize);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        grew(new, new as isize - l.size() as isize);
        unsafe { System.realloc(p, l, new) }
    }
}

/// What [`measure`] saw on the calling thread.
#[derive(Clone, Copy, Debug)]
pub struct Allocated {
    /// Bytes asked for (a realloc counts its whole new size).
    pub bytes: usize,
    /// Allocations of at least [`LARGE_ALLOC`] bytes.
    pub large: usize,
    /// The peak of live bytes above what was live when `f` began.
    pub peak: usize,
}

/// Runs `f` and reports what it allocated on this thread (with the
/// [`Counting`] allocator installed; zeros otherwise).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    let start = COUNTERS.with(|c| {
        let mut v = c.get();
        v.peak = v.live;
        c.set(v);
        v
    });
    let out = f();
    let end = COUNTERS.with(Cell::get);
    let seen = Allocated {
        bytes: end.asked - start.asked,
        large: end.large - start.large,
        peak: (end.peak - start.live).max(0) as usize,
    };
    (out, seen)
}
