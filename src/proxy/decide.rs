//! The decision pipeline: everything the ingress decides about one request, in one place and in one order.
//!
//! From the head: the rate limit (the per-address backstop, then the user's budget), then Accept and
//! Content-Type; from the body: Content-Type of a chunked body that turned out not empty, then JSON (decoded
//! first when the body carries a content coding). Each rule runs in its mode: `enforce` refuses, `observe`
//! records the first refusal it would have given and lets the request through, `off` skips it. The
//! connection machine calls [`Decision::head`] once per request head and [`Decision::body`] once per complete
//! body; what they decided (the API version, the quota) shapes the forwarded head and the answer.
//!
//! Pure: the time is passed in, the limiter is a table of atomics, nothing here reads a socket or a clock.

use core::net::IpAddr;
use std::time::Instant;

use crate::guard::decode::{DecodeError, Decoder};
use crate::guard::json::{JsonError, JsonValidator};
use crate::guard::{Coding, Mode};
use crate::http::request::RequestHead;
use crate::limit::tiers::Memo;
use crate::limit::{retry_after_secs, Decision as Verdict, Limiter};
use crate::problem::Reason;

use super::Rules;

/// The pipeline's working memory, reused from request to request (one per worker; nothing is allocated per
/// request once it is warm).
pub struct Scratch {
    /// The tier lookup's memo of `sha256:` answers (cleared with each new policy).
    pub memo: Memo,
    /// The canonical user key of the request being decided (grows to the longest key, then stays).
    pub key: Vec<u8>,
    pub json: JsonValidator,
    /// Decodes coded JSON bodies (its buffers grow to the largest body and stay).
    pub decoder: Decoder,
    /// Generates request ids (`--request-id-header`); the worker seeds it (see `super::request_id`).
    pub ids: super::request_id::Ids,
}

impl Scratch {
    pub fn new(rules: &Rules) -> Scratch {
        Scratch {
            memo: Memo::default(),
            key: Vec::with_capacity(256),
            json: JsonValidator::new(rules.policy.max_json_depth),
            decoder: Decoder::new(),
            ids: Default::default(),
        }
    }

    /// A new policy is in force: what was memoised under the old one is forgotten.
    pub fn policy_changed(&mut self, old: &Rules, new: &Rules) {
        if old.policy.max_json_depth != new.policy.max_json_depth {
            self.json = JsonValidator::new(new.policy.max_json_depth);
        }
        self.memo.clear();
    }
}

/// What the pipeline needs besides the request: the policy, the limiter, and its reusable working memory.
pub struct Checks<'a> {
    pub rules: &'a Rules,
    /// The process's limiter, when the limit is on.
    pub limiter: Option<&'a Limiter>,
    /// This worker's index (its journal in the fleet-wide limit).
    pub worker: usize,
    pub scratch: &'a mut Scratch,
    /// `--max-body`: a decoded body may not be larger either.
    pub max_body: u64,
    pub now: Instant,
    /// The request is a WebSocket handshake to tunnel: the Accept rule does not apply (a browser cannot set
    /// Accept on one); every other check does.
    pub tunnel: bool,
}

/// One request's decisions.
#[derive(Debug, Default, Clone)]
pub struct Decision {
    /// Index of the API version the Accept rule matched (`Policy::accept`).
    pub api_version: Option<usize>,
    /// The body must be valid JSON.
    pub json: bool,
    /// The Content-Type rule's refusal of a chunked body, applied only if the body is not empty.
    pub deferred: Option<Reason>,
    /// The body's content coding (decoded to be validated, forwarded as sent).
    pub coding: Option<Coding>,
    /// Where a refused JSON body goes wrong (byte offset, what was expected), for the answer.
    pub json_error: Option<(u32, &'static str)>,
    /// Rate limit: the user's remaining quota and seconds to full, after this request.
    pub quota: Option<(u32, u64)>,
    /// Rate limit: seconds to wait, for a 429.
    pub retry_secs: u64,
    /// Rate limit: the user's tier (index into the rules' tiers).
    pub tier: u8,
    /// Rate limit: the user key's hash (for the access log).
    pub user: Option<u64>,
    /// A hash of the user's canonical key that every process computes alike (only when a pool balances by
    /// user: `Rules::stable_user_hash`).
    pub route_key: Option<u64>,
    /// The client's address through a trusted X-Forwarded-For, when it is not the peer's.
    pub client: Option<IpAddr>,
    /// The first refusal an `observe` rule would have given (the request is forwarded).
    pub observed: Option<Reason>,
    /// Bytes of (decoded) JSON validated.
    pub json_bytes: u64,
}

impl Decision {
    /// Decides from a complete, valid head: `Err` is the refusal to answer with (the body is not read).
    pub fn head(&mut self, c: &mut Checks<'_>, head: &RequestHead<'_, '_>, peer: IpAddr) -> Result<(), Reason> {
        let rules = c.rules;
        let limiter = c.limiter.filter(|_| rules.rate_mode != Mode::Off);
        // A field the checks read must reach the upstream as they read it: a Connection header naming it
        // (so that it is removed as hop-by-hop after the check) is refused by the rules that enforce.
        if head.connection_names_fields
            && crate::guard::connection_names_checked(
                &rules.policy,
                head,
                limiter
                    .filter(|_| rules.rate_mode == Mode::Enforce)
                    .map(|l| l.checked_fields()),
            )
        {
            return Err(Reason::InvalidConnectionHeader);
        }
        if let (Some(lim), Some(tiers)) = (limiter, rules.tiers.as_ref()) {
            let key = match lim.user_key(head, peer, &mut c.scratch.key) {
                Ok(k) => k,
                // Observed: counted and logged, and the request is keyed on the socket's address.
                Err(reason) if rules.rate_mode == Mode::Observe => {
                    self.observed = Some(reason.into());
                    lim.address_key(peer)
                }
                Err(reason) => return Err(reason.into()),
            };
            self.user = Some(key.id);
            if rules.stable_user_hash {
                self.route_key = Some(match key.value {
                    // FNV-1a of the canonical key: no per-process seed.
                    Some(v) => v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
                    }),
                    None => super::tunnel::address_key(key.ip),
                });
            }
            self.client = (key.ip != peer).then_some(key.ip);
            self.tier = tiers.lookup(key.id, key.value, &mut c.scratch.memo);
            let tier = &tiers.tiers[self.tier as usize];
            // The per-address backstop, for every request of an address that is not a listed user's; a
            // refusal there spends none of the user's budget.
            if self.tier == 0 {
                match lim.decide_ip(key.ip, c.now) {
                    Some(Verdict::Deny { .. }) if rules.rate_mode == Mode::Observe => {
                        self.observed = Some(Reason::IpRateLimited)
                    }
                    Some(Verdict::Deny { retry_after_us }) => {
                        self.retry_secs = retry_after_secs(retry_after_us);
                        return Err(Reason::IpRateLimited);
                    }
                    _ => {}
                }
            }
            match lim.decide_with(&tier.gcra, key.id, c.now) {
                Verdict::Allow {
                    remaining, reset_us, ..
                } => {
                    lim.record(c.worker, key.id, &tier.gcra);
                    self.quota = Some((remaining, retry_after_secs(reset_us)));
                }
                // Observed: forwarded; a refused decision changed nothing, so no budget is spent.
                Verdict::Deny { .. } if rules.rate_mode == Mode::Observe => {
                    self.observed = self.observed.or(Some(Reason::RateLimited))
                }
                Verdict::Deny { retry_after_us } => {
                    self.retry_secs = retry_after_secs(retry_after_us);
                    return Err(Reason::RateLimited);
                }
            }
        }
        if c.tunnel {
            // A GET without a body: Accept is the only head rule that could apply, and it does not.
            return Ok(());
        }
        let adm = crate::guard::check_head(&rules.policy, head)?;
        self.api_version = adm.version;
        self.json = adm.json_body;
        self.deferred = adm.deferred.map(Reason::from);
        self.coding = adm.coding;
        self.observed = self.observed.or(adm.observed.map(Reason::from));
        Ok(())
    }

    /// Decides from the complete (de-chunked) body: `Err` is the refusal to answer with.
    pub fn body(&mut self, c: &mut Checks<'_>, body: &[u8]) -> Result<(), Reason> {
        let policy = &c.rules.policy;
        // A chunked body that turned out empty has no content to check.
        if body.is_empty() && policy.json_allow_empty {
            self.json = false;
        } else if let Some(r) = self.deferred {
            if policy.content_type_mode == Mode::Enforce {
                return Err(r);
            }
            self.observed = self.observed.or(Some(r));
        }
        if !self.json {
            return Ok(());
        }
        // A coded body is validated decoded (and forwarded as sent), within the body limit and the ratio.
        let doc = match self.coding {
            None => Ok(body),
            Some(coding) => {
                let limit = (c.max_body as usize).min(body.len().saturating_mul(policy.max_decode_ratio as usize));
                c.scratch.decoder.decode(coding, body, limit)
            }
        };
        let verdict = match doc {
            Ok(doc) => {
                self.json_bytes = doc.len() as u64;
                match c.scratch.json.validate(doc) {
                    Ok(()) => None,
                    Err(JsonError::Malformed) => {
                        // Say where (only for a refusal: one more pass over the body).
                        if policy.json_mode == Mode::Enforce {
                            self.json_error = crate::guard::json_where::locate(doc)
                                .map(|(at, what)| (at.min(u32::MAX as usize) as u32, what));
                        }
                        Some(Reason::MalformedJson)
                    }
                    Err(JsonError::TooDeep) => Some(Reason::JsonTooDeep),
                }
            }
            // A size limit, like --max-body: always enforced.
            Err(DecodeError::TooLarge) => return Err(Reason::BodyTooLarge),
            Err(DecodeError::Malformed) => Some(Reason::MalformedContentEncoding),
        };
        match verdict {
            Some(reason) if policy.json_mode == Mode::Enforce => Err(reason),
            Some(reason) => {
                self.observed = self.observed.or(Some(reason));
                Ok(())
            }
            None => Ok(()),
        }
    }
}
