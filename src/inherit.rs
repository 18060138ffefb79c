//! Listening sockets handed over at start instead of bound: by systemd socket activation (`LISTEN_PID`,
//! `LISTEN_FDS`, `LISTEN_FDNAMES`: descriptors from 3 on, named `listen` or `admin` by `FileDescriptorName=`),
//! or by the previous portcullis during an in-place upgrade (SIGUSR2: `PORTCULLIS_INHERITED_FDS`, a list of
//! `fd:name`). Either way the kernel's accept queue outlives the process that made it, so a restart or an
//! upgrade refuses no connection.
//!
//! The one place that turns descriptor numbers into sockets: each is checked to be open and a listening TCP
//! socket before it is used, and marked close-on-exec so it does not leak into later children.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

use socket2::{SockRef, Socket, Type};

/// The environment variable the upgrade passes descriptors in.
pub const INHERITED_FDS: &str = "PORTCULLIS_INHERITED_FDS";
/// The descriptor of the pipe a new process writes one byte to once it serves (the upgrade waits for it).
pub const READY_FD: &str = "PORTCULLIS_READY_FD";

/// The listeners handed over.
#[derive(Debug, Default)]
pub struct Inherited {
    /// HTTP listeners (`listen`).
    pub listen: Vec<TcpListener>,
    /// The admin listener (`admin`).
    pub admin: Option<TcpListener>,
}

/// The sockets this process was given, if any (and removes the variables that named them).
pub fn from_env() -> io::Result<Option<Inherited>> {
    let mut named: Vec<(RawFd, String)> = Vec::new();
    if let Ok(list) = std::env::var(INHERITED_FDS) {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (fd, name) = item.split_once(':').unwrap_or((item, "listen"));
            let fd = fd
                .parse()
                .map_err(|_| io::Error::other(format!("{INHERITED_FDS}: {item:?} is not fd:name")))?;
            named.push((fd, name.to_string()));
        }
        std::env::remove_var(INHERITED_FDS);
    } else if std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id()) {
        let n: RawFd = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other("LISTEN_FDS: not a number"))?;
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let mut names = names.split(':');
        for fd in 3..3 + n {
            let name = names
                .next()
                .filter(|n| !n.is_empty() && *n != "unknown")
                .unwrap_or("listen");
            named.push((fd, name.to_string()));
        }
        for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(v);
        }
    } else {
        return Ok(None);
    }
    let mut got = Inherited::default();
    for (fd, name) in named {
        let l = adopt(fd).map_err(|e| io::Error::new(e.kind(), format!("inherited descriptor {fd} ({name}): {e}")))?;
        match name.as_str() {
            "listen" => got.listen.push(l),
            "admin" if got.admin.is_none() => got.admin = Some(l),
            other => {
                return Err(io::Error::other(format!(
                    "inherited descriptor {fd}: unknown name {other:?} (listen or admin)"
                )))
            }
        }
    }
    Ok(Some(got))
}

/// Takes ownership of descriptor `fd`, once it is known to be an open, listening TCP socket.
fn adopt(fd: RawFd) -> io::Result<TcpListener> {
    // Only a descriptor that is open may be owned (IO safety): /proc lists this process's open ones.
    if fd < 3 || std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return Err(io::Error::other("not an open descriptor"));
    }
    // SAFETY: `fd` is open (checked above), and nothing else in this process owns it: it was handed over by
    // the parent (systemd, or the previous portcullis) for this process to use, and is adopted exactly once
    // (the variable naming it is removed before anything else could read it).
    let socket = unsafe { Socket::from_raw_fd(fd) };
    if socket.r#type()? != Type::STREAM || !socket.is_listener()? {
        // Not ours to close: leave it open as it was.
        std::mem::forget(socket);
        return Err(io::Error::other("not a listening TCP socket"));
    }
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Marks `l` to be inherited by the next program this process starts (or not).
pub fn set_inheritable(l: &TcpListener, yes: bool) -> io::Result<()> {
    SockRef::from(l).set_cloexec(!yes)
}

/// Writes the readiness byte to the pipe an upgrading parent gave (if any).
pub fn signal_ready() {
    let Some(fd) = std::env::var(READY_FD).ok().and_then(|v| v.parse::<RawFd>().ok()) else {
        return;
    };
    std::env::remove_var(READY_FD);
    if fd < 3 || std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return;
    }
    // SAFETY: `fd` is open (checked above) and is the write end of the pipe the parent created for this
    // process alone, passed by number in READY_FD (removed above, so it is adopted once).
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = io::Write::write_all(&mut pipe, b"1");
}
