//! The binary: (config file ->) flags -> Config -> run until SIGTERM/SIGINT.

use std::process::exit;

use clap::{CommandFactory, Parser};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use portcullis::config::{Args, Config};

/// The command line the configuration is parsed from: argv, with the settings of `--config FILE` (or
/// `PORTCULLIS_CONFIG`) put in front as flags, except those the environment or argv sets, so that
/// flags > environment > file > defaults. Read again on SIGHUP.
fn command_line(argv: &[String]) -> Result<Vec<String>, String> {
    let from_flag = argv.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=")
            .map(str::to_string)
            .or_else(|| (a == "--config").then(|| argv.get(i + 1).cloned()).flatten())
    });
    let Some(path) = from_flag.or_else(|| std::env::var("PORTCULLIS_CONFIG").ok()) else {
        return Ok(argv.to_vec());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let settings = portcullis::config_file::parse(&text).map_err(|e| format!("--config {path}: {e}"))?;
    let command = Args::command();
    let mut line = vec![argv[0].clone()];
    for (key, value) in settings {
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .filter(|_| !matches!(key.as_str(), "config" | "check-config" | "help" | "version"))
            .ok_or_else(|| format!("--config {path}: unknown setting {key:?} (settings are named as the flags)"))?;
        let flag = format!("--{key}");
        let in_argv = argv[1..]
            .iter()
            .any(|a| *a == flag || a.strip_prefix(&flag).is_some_and(|r| r.starts_with('=')));
        if in_argv || std::env::var_os(portcullis::config_file::env_name(&key)).is_some() {
            continue;
        }
        if arg.get_action().takes_values() {
            line.push(format!("{flag}={value}"));
        } else {
            match value.as_str() {
                "true" => line.push(flag),
                "false" => {}
                _ => return Err(format!("--config {path}: {key} = {value:?}: expected true or false")),
            }
        }
    }
    line.extend(argv[1..].iter().cloned());
    Ok(line)
}

/// The configuration argv, the environment and the config file describe now.
fn load(argv: &[String]) -> Result<Config, String> {
    let args = Args::try_parse_from(command_line(argv)?)
        .map_err(|e| e.to_string().trim_end().trim_start_matches("error: ").to_string())?;
    Config::from_args(args)
}

fn main() {
    let check = std::env::args().any(|a| a == "--check-config");
    let fail = |msg: String| -> ! {
        eprintln!("portcullis: {msg}");
        exit(if check { 1 } else { 2 });
    };
    let argv: Vec<String> = std::env::args().collect();
    let line = match command_line(&argv) {
        Ok(l) => l,
        Err(e) => fail(e),
    };
    let args = match Args::try_parse_from(line) {
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
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
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
        for sig in signals.forever() {
            if sig == SIGHUP {
                // Re-read --config and --limits; the policy is swapped whole, or not at all.
                let started = std::time::Instant::now();
                match handle.reload(load(&argv)) {
                    Ok(ignored) if ignored.is_empty() => {
                        portcullis::info!("SIGHUP: reloaded the policy in {:?}", started.elapsed())
                    }
                    Ok(ignored) => portcullis::warn!(
                        "SIGHUP: reloaded the policy in {:?}; ignored until a restart: {}",
                        started.elapsed(),
                        ignored.join(", ")
                    ),
                    Err(e) => portcullis::error!("SIGHUP: reload refused, the old policy stays: {e}"),
                }
                continue;
            }
            portcullis::info!("signal {sig}: no longer accepting; finishing in-flight requests");
            handle.shutdown();
            break;
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
