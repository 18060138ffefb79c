//! Process logs on stderr (never the request path): `warn!`, `info!` and `debug!` lines, filtered by
//! `--log-level`.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        ["error", "warn", "info", "debug"][self as usize]
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(l: Level) {
    LEVEL.store(l as u8, Ordering::Relaxed);
}

pub fn enabled(l: Level) -> bool {
    l as u8 <= LEVEL.load(Ordering::Relaxed)
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => {
        eprintln!("portcullis error: {}", format_args!($($t)*));
    };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Warn) {
            eprintln!("portcullis warn: {}", format_args!($($t)*));
        }
    };
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Info) {
            eprintln!("portcullis info: {}", format_args!($($t)*));
        }
    };
}

#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Debug) {
            eprintln!("portcullis debug: {}", format_args!($($t)*));
        }
    };
}
