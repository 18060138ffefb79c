//! The packaging in dist/: the man page and shell completions match the flags (regenerate them with
//! `UPDATE_DIST=1 cargo test --test dist`), the example settings pass `--check-config`, the systemd unit passes
//! `systemd-analyze verify` (where installed), and the alert rules and the dashboard name only metrics that exist
//! (and pass `promtool check rules` where installed).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

fn dist(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist").join(name)
}

/// Compares `got` with the committed file, or writes it with UPDATE_DIST=1.
fn up_to_date(name: &str, got: &[u8]) {
    let path = dist(name);
    if std::env::var_os("UPDATE_DIST").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let have = std::fs::read(&path).unwrap_or_default();
    assert!(
        have == got,
        "dist/{name} is out of date with the flags: run UPDATE_DIST=1 cargo test --test dist"
    );
}

#[test]
fn man_page_and_completions_match_the_flags() {
    let cmd = portcullis::config::Args::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man).unwrap();
    up_to_date("man/portcullis.1", &man);
    for (shell, name) in [
        (clap_complete::Shell::Bash, "completions/portcullis.bash"),
        (clap_complete::Shell::Zsh, "completions/_portcullis"),
        (clap_complete::Shell::Fish, "completions/portcullis.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "portcullis", &mut out);
        up_to_date(name, &out);
    }
    // Every flag is in the man page.
    let text = String::from_utf8(man).unwrap();
    for a in cmd.get_arguments().filter_map(|a| a.get_long()) {
        assert!(
            text.contains(&format!("\\-\\-{}", a.replace('-', "\\-"))),
            "--{a} missing from the man page"
        );
    }
}

#[test]
fn the_example_settings_pass_check_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--config", dist("portcullis.toml").to_str().unwrap()])
        .args(["--limits", dist("limits.toml").to_str().unwrap()])
        // The example's log directory exists only on an installed system.
        .args(["--access-log", "-", "--check-config"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("application/vnd.example.v2+json") && text.contains("drain-delay = \"5000ms\""),
        "{text}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("note: systemd-analyze is not installed; the unit was not verified");
        return;
    };
    assert!(v.status.success());
    // The unit names the installed binary: point it at this build for the check.
    let dir = std::env::temp_dir().join(format!("portcullis-test-{}-unit", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["portcullis.service", "portcullis.socket"] {
        let unit = std::fs::read_to_string(dist(name))
            .unwrap()
            .replace("/usr/local/bin/portcullis", env!("CARGO_BIN_EXE_portcullis"));
        std::fs::write(dir.join(name), unit).unwrap();
    }
    let path = dir.join("portcullis.service");
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            path.to_str().unwrap(),
            dir.join("portcullis.socket").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    // Complaints about the machine the test runs on (no running systemd, missing system units) are not about
    // this unit; anything naming it is.
    let about_unit: Vec<&str> = err.lines().filter(|l| l.contains("portcullis.s")).collect();
    assert!(about_unit.is_empty(), "{err}");
}

/// Every `portcullis_*` metric name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("portcullis_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].trim_end_matches("_bucket").to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn alerts_and_dashboard_name_metrics_that_exist() {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs")).unwrap();
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(dist(file)).unwrap();
        let names = metric_names(&text);
        assert!(names.len() > 5, "{file}");
        for n in names {
            assert!(
                source.contains(&format!("\"{n}")),
                "{file} names {n}, which src/metrics.rs does not export"
            );
        }
    }
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dist("grafana-dashboard.json")).unwrap()).unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 8);
    match Command::new("promtool")
        .args(["check", "rules", dist("alerts.yml").to_str().unwrap()])
        .output()
    {
        Ok(out) => assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout)),
        Err(_) => eprintln!("note: promtool is not installed; the rules' syntax was not checked"),
    }
}
