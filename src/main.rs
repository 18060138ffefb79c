//! The binary: (config file ->) flags -> Config -> run until SIGTERM/SIGINT.

use std::process::exit;

use clap::{CommandFactory, Parser};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
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
    let from_tables = portcullis::config_file::table_settings(&text);
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
        let in_env = std::env::var_os(portcullis::config_file::env_name(&key)).is_some();
        if (in_argv || in_env) && from_tables.contains(&key.as_str()) {
            // The file's pool tables would be replaced whole, not added to: say so rather than drop them.
            return Err(format!(
                "--config {path}: its [upstreams] / [[routes]] tables set {key}, and so does {}: give the pools in one place",
                if in_argv { format!("--{key}") } else { portcullis::config_file::env_name(&key) }
            ));
        }
        if in_argv || in_env {
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
        Err(e) => fail(with_env_source(&e, &argv)),
    };
    let config = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => fail(e),
    };
    if check {
        // Everything a start would refuse, except binding the listen ports (a running node holds them).
        let limiter = portcullis::server::build_limiter(&config);
        if let Err(e) = portcullis::rules::Rules::build(&config, limiter.as_ref()) {
            fail(e);
        }
        if let Some(p) = config.access_log.as_deref().filter(|p| *p != "-") {
            // Without creating it (a check run as root must not leave a file the service cannot open).
            let path = std::path::Path::new(p);
            let r = if path.exists() {
                std::fs::OpenOptions::new().append(true).open(path).map(drop)
            } else {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                std::fs::metadata(dir).and_then(|m| {
                    if m.is_dir() {
                        Ok(())
                    } else {
                        Err(std::io::Error::other("its directory is not a directory"))
                    }
                })
            };
            if let Err(e) = r {
                fail(format!("--access-log {p}: {e}"));
            }
        }
        for s in config.upstreams.pools.iter().flat_map(|p| &p.servers) {
            // A warning only: the upstream may start after the ingress.
            if let Err(e) = std::net::TcpStream::connect_timeout(&s.addr, std::time::Duration::from_secs(1)) {
                eprintln!("portcullis: warning: --upstream {}: not reachable now ({e})", s.name);
            }
        }
        print!("{}", config.describe());
        exit(0);
    }
    portcullis::log::set_level(config.log_level);
    let mut inherited = match portcullis::inherit::from_env() {
        Ok(i) => i,
        Err(e) => fail(e.to_string()),
    };
    let ready_pipe = inherited.as_mut().and_then(|i| i.ready.take());
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2]) {
        Ok(s) => s,
        Err(e) => fail(format!("cannot install signal handlers: {e}")),
    };
    portcullis::debug!("effective configuration:\n{}", config.describe().trim_end());
    let summary = summary(&config);
    warn_about_open_files(config.max_connections);
    let drain_delay = config.timeouts.drain_delay;
    let running = match portcullis::server::start_with(config, inherited) {
        Ok(r) => r,
        Err(e) => {
            // Start-up failures are configuration errors (a port in use, a file that cannot be read): exit 2.
            portcullis::error!("cannot start: {e}");
            exit(2);
        }
    };
    portcullis::info!("{summary}");
    // An upgrading parent waits for this before it drains.
    portcullis::inherit::signal_ready(ready_pipe);
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
                        ignored.iter().map(|f| f.flag()).collect::<Vec<_>>().join(", ")
                    ),
                    Err(e) => portcullis::error!("SIGHUP: reload refused, the old policy stays: {e}"),
                }
                continue;
            }
            if sig == SIGUSR2 {
                // In-place upgrade: the binary at our path now (a new version) starts with our listening sockets;
                // once it serves, this process drains as on SIGTERM.
                // The path it was started by (argv[0], as nginx does): after an upgrade of the file there,
                // /proc/self/exe names the old, deleted file.
                let program = match std::env::args_os().next().filter(|a| a.to_string_lossy().contains('/')) {
                    Some(p) => std::path::PathBuf::from(p),
                    None => match std::env::current_exe() {
                        Ok(p) => p,
                        Err(e) => {
                            portcullis::error!("SIGUSR2: cannot find this program's path: {e}");
                            continue;
                        }
                    },
                };
                let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
                match handle.upgrade(&program, &args, std::time::Duration::from_secs(30)) {
                    Ok(pid) => portcullis::info!("SIGUSR2: the new process (pid {pid}) serves; this one drains"),
                    Err(e) => {
                        portcullis::error!("SIGUSR2: upgrade failed, this process goes on serving: {e}");
                        continue;
                    }
                }
            } else if sig == SIGUSR1 {
                // Reopen the access log (after a rotation moved it away), as nginx does on USR1.
                handle.reopen_access_log();
                portcullis::info!("SIGUSR1: the access log is reopened with its next write");
                continue;
            }
            // SIGTERM, SIGINT, SIGQUIT (nginx's graceful stop), or after a hand-over: drain.
            if !drain_delay.is_zero() && sig != SIGUSR2 {
                handle.unready();
                portcullis::info!(
                    "signal {sig}: /readyz answers 503; still accepting for {drain_delay:?} (--drain-delay)"
                );
                std::thread::sleep(drain_delay);
            }
            portcullis::info!("signal {sig}: no longer accepting; finishing in-flight requests");
            handle.shutdown();
            break;
        }
    });
    match running.join() {
        Ok(0) => portcullis::info!("stopped"),
        Ok(cut) => {
            portcullis::warn!("stopped at --shutdown-timeout with {cut} requests still in flight (cut)");
            exit(3);
        }
        Err(e) => {
            portcullis::error!("{e}");
            exit(1);
        }
    }
}

/// A clap error, naming the environment variable when the bad value came from one.
fn with_env_source(e: &clap::Error, argv: &[String]) -> String {
    let msg = e.to_string().trim_end().trim_start_matches("error: ").to_string();
    let Some(clap::error::ContextValue::String(arg)) = e.get(clap::error::ContextKind::InvalidArg) else {
        return msg;
    };
    let long = arg.split_whitespace().next().unwrap_or("").trim_start_matches("--");
    let in_argv = argv
        .iter()
        .skip(1)
        .any(|a| a == &format!("--{long}") || a.starts_with(&format!("--{long}=")));
    let cmd = Args::command();
    let env = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    match env {
        Some(var) if !in_argv && std::env::var_os(&var).is_some() => format!("{msg} (from the environment: {var})"),
        _ => msg,
    }
}

/// The one-line start-up summary (the whole configuration is logged at `debug`).
fn summary(c: &Config) -> String {
    let rate = match &c.rate {
        Some(r) => format!(
            "{}/s per user (burst {}), {}{}",
            r.rate,
            r.burst,
            r.ip.as_ref().map_or("no per-address limit".to_string(), |b| format!(
                "{}/s per address",
                b.rate
            )),
            if r.fleet() { ", fleet-wide" } else { "" }
        ),
        None => "no rate limit".to_string(),
    };
    format!(
        "portcullis {}: {} workers, upstream {}, {rate}, max body {} B, accept rule {}, JSON rule {}",
        env!("CARGO_PKG_VERSION"),
        c.workers,
        match c.upstreams.pools.len() {
            0 => "built-in echo".to_string(),
            1 if c.upstreams.pools[0].servers.len() == 1 => c.upstreams.pools[0].servers[0].name.clone(),
            n => format!(
                "{n} pools of {} servers",
                c.upstreams.pools.iter().map(|p| p.servers.len()).sum::<usize>()
            ),
        },
        c.limits.max_body,
        c.policy.accept_mode.name(),
        c.policy.json_mode.name(),
    )
}

/// Warns when `--max-connections` is more than the open-file limit allows (each connection is a descriptor,
/// and one more while it has an upstream connection).
fn warn_about_open_files(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = soft.filter(|&n| n < max_connections + 64) {
        portcullis::warn!(
            "--max-connections {max_connections} needs more descriptors than the open-file limit ({n}) allows: one per client connection, one more while it has an upstream connection (raise it: LimitNOFILE= in the unit, or ulimit -n)"
        );
    }
}
