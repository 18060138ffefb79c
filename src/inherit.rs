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
    /// TLS listeners (`tls-listen`).
    pub tls_listen: Vec<TcpListener>,
    /// The admin listener (`admin`).
    pub admin: Option<TcpListener>,
    /// The pipe an upgrading parent waits on (see [`signal_ready`]).
    pub ready: Option<std::fs::File>,
}

/// The sockets this process was given, if any (and removes the variables that named them). Call it first
/// thing, before any other thread or descriptor exists: it adopts descriptors by number.
pub fn from_env() -> io::Result<Option<Inherited>> {
    let ready = match std::env::var(READY_FD).ok() {
        Some(v) => {
            std::env::remove_var(READY_FD);
            let fd: RawFd = v
                .parse()
                .map_err(|_| io::Error::other(format!("{READY_FD}: {v:?} is not a descriptor")))?;
            if fd < 3 || std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
                return Err(io::Error::other(format!("{READY_FD}: descriptor {fd} is not open")));
            }
            // SAFETY: `fd` is open (checked above) and is the write end of the pipe the upgrading parent created
            // for this process alone; nothing else has run yet that could own it, and the variable naming it is
            // removed, so it is adopted once.
            Some(unsafe { std::fs::File::from_raw_fd(fd) })
        }
        None => None,
    };
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
        return Ok(ready.map(|r| Inherited {
            ready: Some(r),
            ..Default::default()
        }));
    }
    let mut got = Inherited {
        ready,
        ..Default::default()
    };
    for (i, (fd, _)) in named.iter().enumerate() {
        if named[..i].iter().any(|(other, _)| other == fd) {
            return Err(io::Error::other(format!("inherited descriptor {fd} named twice")));
        }
    }
    for (fd, name) in named {
        let l = adopt(fd).map_err(|e| io::Error::new(e.kind(), format!("inherited descriptor {fd} ({name}): {e}")))?;
        match name.as_str() {
            "listen" => got.listen.push(l),
            "tls-listen" => got.tls_listen.push(l),
            "admin" if got.admin.is_none() => got.admin = Some(l),
            other => {
                return Err(io::Error::other(format!(
                    "inherited descriptor {fd}: unknown name {other:?} (listen, tls-listen or admin)"
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
    // the parent (systemd, or the previous portcullis) for this process to use, is adopted exactly once (each
    // number once, checked by the caller; the variable naming it is removed before anything else could read
    // it), and until it passes every check it is held without being closed on any path.
    let socket = std::mem::ManuallyDrop::new(unsafe { Socket::from_raw_fd(fd) });
    let listening = socket.r#type().is_ok_and(|t| t == Type::STREAM) && socket.is_listener().unwrap_or(false);
    if !listening {
        // Not ours to close: left open as it was.
        return Err(io::Error::other("not a listening TCP socket"));
    }
    let socket = std::mem::ManuallyDrop::into_inner(socket);
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Marks `l` to be inherited by the next program this process starts (or not).
pub fn set_inheritable(l: &TcpListener, yes: bool) -> io::Result<()> {
    SockRef::from(l).set_cloexec(!yes)
}

/// Writes the readiness byte to the pipe an upgrading parent gave (taken by [`from_env`]), and closes it.
pub fn signal_ready(pipe: Option<std::fs::File>) {
    if let Some(mut pipe) = pipe {
        let _ = io::Write::write_all(&mut pipe, b"1");
    }
}
