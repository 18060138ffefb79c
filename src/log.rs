//! Process logs on stderr (never the request path): `warn!` and `info!` lines with a timestamp.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences `info!` (warnings still print).
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub fn enabled_info() -> bool {
    !QUIET.load(Ordering::Relaxed)
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => {
        if $crate::log::enabled_info() {
            eprintln!("portcullis info: {}", format_args!($($t)*));
        }
    };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => {
        eprintln!("portcullis warn: {}", format_args!($($t)*));
    };
}
