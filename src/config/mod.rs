//! Every flag, its default, its environment variable and its check.
//!
//! `Args` (`args`) is what clap parses (flags override `PORTCULLIS_*` environment variables, which override the
//! defaults); `Config` (`schema`) is the validated, plain value the rest of the process is built from;
//! `validate` builds one from the other; `render` prints it back as settings (`--check-config`); `diff` tells
//! which of two configurations' differences a reload cannot apply. The pure layers own their settings' types
//! (`http::Limits`, `guard::Policy`, `limit::KeyMode`...): this module builds them and nothing below imports it.

mod args;
mod diff;
mod render;
mod schema;
mod upstreams;
mod validate;

pub use crate::http::MAX_HEADERS_LIMIT;
pub use args::Args;
pub use diff::{restart_only_changes, RestartOnly};
/// The HTTP layer's size limits: owned by `http` (a pure layer imports nothing of the configuration), built here.
pub use schema::Limits;
pub use schema::{Config, ProxyProtocol, RateConfig, Secret, Timeouts, TlsConfig};
pub use upstreams::{Checks, Upstreams};
pub use validate::{parse_duration, parse_size, read_secret, MIN_SECRET};
