//! The binary: flags -> Config -> run until SIGTERM/SIGINT.

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use portcullis::config::{Args, Config};

fn main() {
    let config = match Config::from_args(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e}");
            std::process::exit(2);
        }
    };
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcullis: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    let running = match portcullis::server::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let handle = running.shutdown_handle();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            portcullis::info!("signal {sig}: no longer accepting; finishing in-flight requests");
            handle.shutdown();
        }
    });
    match running.join() {
        Ok(()) => portcullis::info!("stopped"),
        Err(e) => {
            eprintln!("portcullis: {e}");
            std::process::exit(1);
        }
    }
}
