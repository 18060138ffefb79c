//! The binary: (config file ->) flags -> Config -> run until SIGTERM/SIGINT.

use std::process::exit;

use clap::{CommandFactory, Parser};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use portcullis::config::{Args, Config};

/// Applies `--config FILE` (or `PORTCULLIS_CONFIG`): every key becomes its flag's environment variable unless
/// that variable is already set, so flags > environment > file > defaults.
fn apply_config_file() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().collect();
    let from_flag = argv.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=")
            .map(str::to_string)
            .or_else(|| (a == "--config").then(|| argv.get(i + 1).cloned()).flatten())
    });
    let Some(path) = from_flag.or_else(|| std::env::var("PORTCULLIS_CONFIG").ok()) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let settings = portcullis::config_file::parse(&text).map_err(|e| format!("--config {path}: {e}"))?;
    let known: Vec<String> = Args::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| !matches!(l.as_str(), "config" | "check-config" | "help" | "version"))
        .collect();
    for (key, value) in settings {
        if !known.contains(&key) {
            return Err(format!(
                "--config {path}: unknown setting {key:?} (settings are named as the flags)"
            ));
        }
        let var = portcullis::config_file::env_name(&key);
        if std::env::var_os(&var).is_none() {
            // Single-threaded here: nothing else reads the environment yet.
            std::env::set_var(var, value);
        }
    }
    Ok(())
}

fn main() {
    let check = std::env::args().any(|a| a == "--check-config");
    let fail = |msg: String| -> ! {
        eprintln!("portcullis: {msg}");
        exit(if check { 1 } else { 2 });
    };
    if let Err(e) = apply_config_file() {
        fail(e);
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e)
            if e.kind() == clap::error::ErrorKind::DisplayHelp
                || e.kind() == clap::error::ErrorKind::DisplayVersion =>
        {
            e.exit()
        }
        Err(e) => fail(e.to_string().trim_end().trim_start_matches("error: ").to_string()),
    };
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => fail(e),
    };
    if check {
        print!("{}", config.describe());
        exit(0);
    }
    portcullis::log::set_level(config.log_level);
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => fail(format!("cannot install signal handlers: {e}")),
    };
    portcullis::info!("effective configuration:\n{}", config.describe().trim_end());
    let running = match portcullis::server::start(config) {
        Ok(r) => r,
        Err(e) => {
            portcullis::error!("cannot start: {e}");
            exit(1);
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
            portcullis::error!("{e}");
            exit(1);
        }
    }
}
