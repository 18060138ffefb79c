//! portcullis: an edge ingress that refuses bad HTTP/1.1 requests at line rate and relays the rest.
//!
//! Layers (see `docs/architecture.md`): `http` is pure protocol logic over bytes; `worker` is the only
//! place with sockets; `server` starts workers and owns process lifetime.
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod buf;
pub mod config;
pub mod config_file;
pub mod echo;
pub mod guard;
pub mod http;
pub mod inherit;
pub mod limit;
pub mod log;
pub mod metrics;
pub mod proxy;
pub mod redis_sync;
pub mod rules;
pub mod server;
pub mod timer;
pub mod toml_subset;
pub mod worker;
