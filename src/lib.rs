//! portcullis: an edge ingress that refuses bad HTTP/1.1 requests at line rate and relays the rest.
//!
//! Layers (see `docs/architecture.md`): `http`, `guard` and `limit` are pure logic over bytes and plain values;
//! `config` builds their settings; `worker` does the request path's I/O; `server` starts the workers and the
//! helper threads (`admin`, `redis_sync`, the access-log writer), handing each a narrow handle, and owns the
//! process lifetime.
//!
//! To run the same checks inside your own service, see [`check`]: the pure layers behind a small documented API
//! (and `docs/library.md`).
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod buf;
pub mod check;
pub mod clock;
// The flags' doc comments are their `--help` text, written for a terminal: `redis://[user:password@]host` there
// is an example, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
pub mod config;
pub mod config_file;
pub mod echo;
pub mod guard;
pub mod health;
pub mod http;
pub mod inherit;
#[cfg(feature = "tower")]
pub mod layer;
pub mod limit;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod pool;
pub mod problem;
pub mod proxy;
pub mod proxy_protocol;
pub mod redis_sync;
pub mod rules;
pub mod server;
pub mod timer;
pub mod tls;
pub mod toml_subset;
pub mod transport;
pub mod worker;
