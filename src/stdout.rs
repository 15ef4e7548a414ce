//! Writing to stdout without panicking when its reader has gone away.
//!
//! `println!` panics when stdout is a closed pipe (`attendsync status | head -2`):
//! Rust ignores SIGPIPE, so the write fails with `EPIPE` and the macro panics
//! (exit 101). [`print`] treats a closed stdout as "stop printing": the first
//! failed write is remembered, every later one is skipped, and the command goes
//! on to its normal exit status. The [`out!`](crate::out) and
//! [`outln!`](crate::outln) macros are the drop-in replacements.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout and flushes it. A closed pipe (or any other write
/// error) stops all further output of the process; it never panics.
pub fn print(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            tracing::warn!("stdout is not writable ({e}); nothing more is printed there");
        }
    }
}

/// Whether a write to stdout has failed (its reader went away).
pub fn is_closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// `print!` that survives a closed stdout (see [`crate::stdout`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::print(&::std::format!($($arg)*))
    };
}

/// `println!` that survives a closed stdout (see [`crate::stdout`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::print("\n")
    };
    ($($arg:tt)*) => {
        $crate::stdout::print(&::std::format!("{}\n", ::std::format_args!($($arg)*)))
    };
}
