//! The policy in force: one immutable value that `SIGHUP` replaces as a whole.
//!
//! Workers hold an `Arc<Rules>` and compare a generation counter at the top of each loop iteration (one
//! relaxed load); only when it moved do they take the lock and clone the new `Arc`. No lock on the request
//! path, and a request decided under one value is never half-decided under another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::guard::Mode;
use crate::limit::tiers::{self, Tier, Tiers};
use crate::limit::Limiter;
use crate::problem::Catalogue;
pub use crate::proxy::Rules;

impl Rules {
    /// Builds the rules of `config`, reading its `--limits` file. `limiter`: the process's limiter (its key
    /// hash lists users), present iff the limit is on.
    pub fn build(config: &Config, limiter: Option<&Limiter>) -> Result<Rules, String> {
        let tiers = match (&config.rate, limiter) {
            (Some(r), Some(l)) => {
                let default = Tier::new("default", r.rate, r.burst);
                Some(match &r.limits_path {
                    Some(path) => {
                        let text = std::fs::read_to_string(path).map_err(|e| format!("--limits {path}: {e}"))?;
                        let specs = tiers::parse(&text).map_err(|e| format!("--limits {path}: {e}"))?;
                        Tiers::build(default, &specs, |v| l.value_hash(v))
                            .map_err(|e| format!("--limits {path}: {e}"))?
                    }
                    None => Tiers::single(default),
                })
            }
            _ => None,
        };
        Ok(Rules {
            catalogue: Catalogue::new(&crate::problem::Settings {
                docs_url: config.docs_url.as_deref(),
                accepted: &config.policy.accept.iter().map(|t| t.media.clone()).collect::<Vec<_>>(),
                encodings: &[
                    (crate::guard::Coding::Gzip, "gzip, "),
                    (crate::guard::Coding::Deflate, "deflate, "),
                ]
                .iter()
                .filter(|(c, _)| config.policy.json_decode & c.bit() != 0)
                .map(|(_, n)| *n)
                .chain(["identity"])
                .collect::<String>(),
                max_body: config.limits.max_body,
                max_json_depth: config.policy.max_json_depth,
                contact: config.contact.as_deref(),
            }),
            policy: config.policy.clone(),
            rate_mode: config.rate.as_ref().map_or(Mode::Off, |r| r.mode),
            tiers,
            ip_tier: config
                .rate
                .as_ref()
                .and_then(|r| r.ip.as_ref())
                .map(|b| Tier::new("ip", b.rate, b.burst)),
            ratelimit_headers: config.rate.as_ref().is_some_and(|r| r.headers),
            observe_header: config.observe_header.as_ref().map(|h| h.as_bytes().to_vec()),
            request_id: config
                .request_id_header
                .as_ref()
                .map(|h| crate::proxy::request_id::Rule {
                    header: h.as_bytes().to_vec(),
                    trust: config.trust_request_id,
                }),
            stable_user_hash: config
                .upstreams
                .pools
                .iter()
                .any(|p| p.balance == crate::pool::Balance::Hash),
        })
    }
}

/// The current rules and their generation.
pub struct Current {
    rules: Mutex<Arc<Rules>>,
    generation: AtomicU64,
}

impl Current {
    pub fn new(rules: Rules) -> Current {
        Current {
            rules: Mutex::new(Arc::new(rules)),
            generation: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The rules in force and their generation.
    pub fn get(&self) -> (Arc<Rules>, u64) {
        let g = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        (g.clone(), self.generation.load(Ordering::Acquire))
    }

    pub fn replace(&self, rules: Rules) {
        let mut g = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        *g = Arc::new(rules);
        self.generation.fetch_add(1, Ordering::Release);
    }
}
