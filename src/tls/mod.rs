//! TLS termination: the certificates (loaded from PEM files, chosen by SNI, reloaded in place) and the
//! rustls server configuration every TLS listener's connections are made from.
//!
//! The configuration is built once and kept for the process's life: its session ticketer and its stateful
//! session cache survive certificate reloads (a reload swaps the certificate set inside the resolver only),
//! so a reload never ends resumption.
//!
//! Certificate choice (the resolver, per handshake): the client's SNI name, case-insensitively, against every
//! certificate's DNS SANs: an exact name first, else a `*.` wildcard covering exactly one leftmost label
//! (`a.example.com` is covered by `*.example.com`; `example.com` and `b.a.example.com` are not). Among several
//! certificates naming it, the first configured whose key can sign with a scheme the client offers (for a
//! name served by both an ECDSA and an RSA certificate), else simply the first configured. A client without
//! SNI, or naming no configured name, gets the default certificate (`--tls-default-cert`, else the first
//! configured); with `--tls-strict-sni` its handshake is refused instead (rustls sends an alert).
//!
//! Order: the `--tls-cert`/`--tls-key` pairs in order, then the `NAME.crt` files of `--tls-cert-dir` in the
//! byte order of their NAMEs.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub mod x509;

#[cfg(test)]
mod tests;

/// Entries of the stateful session cache (TLS 1.2 session-ID resumption, for clients that do not take
/// tickets; ticket resumption is stateless). Each holds one serialized session, a few hundred bytes, so the
/// cache is bounded at a few MB; when full, rustls evicts the oldest entries.
pub const SESSION_CACHE_ENTRIES: usize = 16_384;

/// The one protocol the listener offers by ALPN (never `h2`).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The lowest protocol version accepted (`--tls-min-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and TLS 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// What the TLS flags say.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--tls-cert FILE --tls-key FILE` pairs, in order.
    pub pairs: Vec<(PathBuf, PathBuf)>,
    /// `--tls-cert-dir DIR`: each `NAME.crt` with its `NAME.key`.
    pub dir: Option<PathBuf>,
    /// `--tls-default-cert NAME`: the certificate for a client without SNI or naming no configured name (the
    /// file stem in a directory, or the first SAN of a pair).
    pub default_cert: Option<String>,
    /// `--tls-strict-sni`: refuse the handshake of a client without SNI or naming no configured name.
    pub strict_sni: bool,
    /// `--tls-min-version`: the lowest protocol version accepted.
    pub min_version: MinVersion,
    /// `--tls-expiry-warn`: a certificate that expires within this is logged at start and at each reload.
    pub expiry_warn: Duration,
}

/// One loaded certificate, as the operator and the metrics see it.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The file stem (`a` for `a.crt`), or the first SAN of a `--tls-cert` pair.
    pub name: String,
    /// The DNS names of its SANs (`*.example.com` for a wildcard), lower case.
    pub sans: Vec<String>,
    /// When it expires (notAfter).
    pub not_after: SystemTime,
}

impl CertInfo {
    /// notAfter as seconds since the Unix epoch (the value of `portcullis_tls_certificate_expiry_seconds`).
    pub fn not_after_unix(&self) -> i64 {
        x509::unix_seconds(self.not_after)
    }
}

/// The TLS side of the process: the server configuration (shared by every TLS connection of every worker)
/// and the certificate set behind it.
pub struct Tls {
    settings: Settings,
    config: Arc<rustls::ServerConfig>,
    resolver: Arc<Resolver>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads every certificate and builds the server configuration. An error names the file and what is
    /// wrong with it (unreadable, no certificate, no key, a key that does not match its certificate, an
    /// unsupported key type, a certificate without a DNS name, a default that names no certificate).
    pub fn load(settings: &Settings) -> Result<Tls, String> {
        let set = CertSet::load(settings)?;
        let resolver = Arc::new(Resolver {
            set: RwLock::new(Arc::new(set)),
            strict_sni: settings.strict_sni,
        });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        // The provider's default suites and key exchange groups: rustls's safe defaults.
        let provider = Arc::new(aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // The server's order of cipher suites (rustls's defaults, strongest first) wins over the client's.
        config.ignore_client_order = true;
        config.ticketer = aws_lc_rs::Ticketer::new().map_err(|e| format!("TLS session ticketer: {e}"))?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        Ok(Tls {
            settings: settings.clone(),
            config: Arc::new(config),
            resolver,
        })
    }

    /// The configuration to make each TLS connection from.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.config)
    }

    /// Re-reads every certificate (same settings): on success new handshakes use the new set (established
    /// connections continue); on any error the old set stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let set = CertSet::load(&self.settings)?;
        self.resolver.replace(set);
        Ok(())
    }

    /// The certificates in force, in the order they were configured.
    pub fn certs(&self) -> Vec<CertInfo> {
        self.resolver.current().infos.clone()
    }

    /// One line for each certificate in force that expires within `--tls-expiry-warn` of `now` (or has
    /// expired), e.g. `certificate "a" (a.example.com) expires in 3 days (2026-12-10 12:00:00 UTC)`.
    pub fn expiry_warnings(&self, now: SystemTime) -> Vec<String> {
        let set = self.resolver.current();
        let mut lines = Vec::new();
        for info in &set.infos {
            let when = match info.not_after.duration_since(now) {
                Ok(left) if left < self.settings.expiry_warn => format!("expires in {}", span(left)),
                Ok(_) => continue,
                Err(past) => format!("expired {} ago", span(past.duration())),
            };
            lines.push(format!(
                "certificate \"{}\" ({}) {when} ({})",
                info.name,
                info.sans.join(", "),
                x509::format_utc(info.not_after)
            ));
        }
        lines
    }
}

/// A duration as people read it: the largest whole unit (`3 days`, `1 hour`, `42 seconds`).
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        86_400.. => (secs / 86_400, "day"),
        3600.. => (secs / 3600, "hour"),
        60.. => (secs / 60, "minute"),
        _ => (secs, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The certificate set in force: built whole at load and at each reload, then only read.
struct CertSet {
    keys: Vec<Arc<CertifiedKey>>,
    infos: Vec<CertInfo>,
    /// Exact SAN -> the certificates naming it, in configuration order.
    exact: HashMap<String, Vec<usize>>,
    /// `*.PARENT` SAN -> (keyed by PARENT) the certificates naming it, in configuration order.
    wildcard: HashMap<String, Vec<usize>>,
    /// The certificate for a client without SNI or naming no configured name (unless strict).
    default: usize,
}

impl fmt::Debug for CertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertSet")
            .field("certs", &self.infos)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl CertSet {
    /// Reads every configured certificate and key.
    fn load(settings: &Settings) -> Result<CertSet, String> {
        let mut sources: Vec<(Option<String>, PathBuf, PathBuf)> = settings
            .pairs
            .iter()
            .map(|(cert, key)| (None, cert.clone(), key.clone()))
            .collect();
        if let Some(dir) = &settings.dir {
            for (name, cert, key) in dir_pairs(dir)? {
                sources.push((Some(name), cert, key));
            }
        }
        if sources.is_empty() {
            return Err("no TLS certificate configured (--tls-cert with --tls-key, or --tls-cert-dir)".into());
        }
        let mut keys = Vec::with_capacity(sources.len());
        let mut infos = Vec::with_capacity(sources.len());
        for (name, cert, key) in &sources {
            let (certified, info) = load_pair(name.as_deref(), cert, key)?;
            keys.push(certified);
            infos.push(info);
        }
        let default = match &settings.default_cert {
            None => 0,
            Some(name) => infos.iter().position(|i| &i.name == name).ok_or_else(|| {
                let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
                format!(
                    "--tls-default-cert {name:?} names no certificate (the names are: {})",
                    names.join(", ")
                )
            })?,
        };
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, info) in infos.iter().enumerate() {
            for san in &info.sans {
                let san = san.strip_suffix('.').unwrap_or(san);
                let (map, key) = match san.strip_prefix("*.") {
                    Some(parent) if !parent.is_empty() && !parent.contains('*') => (&mut wildcard, parent),
                    // A `*` anywhere else (`f*.example.com`, `*.*.example.com`) is not a pattern that
                    // clients honour; such a SAN can never match.
                    _ if san.contains('*') => continue,
                    _ => (&mut exact, san),
                };
                let list = map.entry(key.to_owned()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        Ok(CertSet {
            keys,
            infos,
            exact,
            wildcard,
            default,
        })
    }

    /// The certificates naming `sni`, in configuration order: the exact matches if any, else the wildcards
    /// covering it; `None` when none does.
    fn lookup(&self, sni: &str) -> Option<&[usize]> {
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        // rustls hands over the name already in lower case; anything else is lowered here.
        let name: Cow<'_, str> = if sni.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(sni.to_ascii_lowercase())
        } else {
            Cow::Borrowed(sni)
        };
        if let Some(list) = self.exact.get(name.as_ref()) {
            return Some(list);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() || label.contains('*') || parent.is_empty() {
            return None;
        }
        self.wildcard.get(parent).map(Vec::as_slice)
    }

    /// The certificate for a client naming `sni` (`None`: no SNI) and offering `schemes`; `None` when no
    /// certificate names it.
    fn choose(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Option<usize> {
        let list = sni.and_then(|n| self.lookup(n))?;
        match list {
            [only] => Some(*only),
            _ => list
                .iter()
                .copied()
                .find(|&i| self.keys.get(i).is_some_and(|k| k.key.choose_scheme(schemes).is_some()))
                .or_else(|| list.first().copied()),
        }
    }
}

/// The `NAME.crt` + `NAME.key` pairs of a directory, in the byte order of NAME.
fn dir_pairs(dir: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read the directory: {e}", dir.display()))?;
    // NAME -> (has .crt, has .key); a BTreeMap of Strings orders by bytes.
    let mut found: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: cannot read the directory: {e}", dir.display()))?;
        let path = entry.path();
        let is_crt = match path.extension() {
            Some(ext) if ext == "crt" => true,
            Some(ext) if ext == "key" => false,
            _ => continue,
        };
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            return Err(format!("{}: the file name is not UTF-8", path.display()));
        };
        let slot = found.entry(stem.to_owned()).or_default();
        if is_crt {
            slot.0 = true;
        } else {
            slot.1 = true;
        }
    }
    let mut pairs = Vec::with_capacity(found.len());
    for (name, (crt, key)) in found {
        let cert = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        match (crt, key) {
            (true, true) => pairs.push((name, cert, key_path)),
            (true, false) => return Err(format!("{}: no matching {}", cert.display(), key_path.display())),
            _ => return Err(format!("{}: no matching {}", key_path.display(), cert.display())),
        }
    }
    if pairs.is_empty() {
        return Err(format!(
            "{}: no NAME.crt + NAME.key pair in the directory",
            dir.display()
        ));
    }
    Ok(pairs)
}

/// What a PEM read error means, for a message that already names the file.
fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read: {e}"),
        e => format!("malformed PEM: {e}"),
    }
}

/// Loads one certificate chain and its key; `name` is the file stem for a directory entry (`None`: the
/// first SAN).
fn load_pair(name: Option<&str>, cert_path: &Path, key_path: &Path) -> Result<(Arc<CertifiedKey>, CertInfo), String> {
    let cert_file = cert_path.display();
    let key_file = key_path.display();
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("{cert_file}: {}", pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_file}: {}", pem_error(e)))?;
    let Some(end_entity) = chain.first() else {
        return Err(format!("{cert_file}: no CERTIFICATE in the file"));
    };
    let fields = x509::fields(end_entity).map_err(|e| format!("{cert_file}: malformed certificate: {e}"))?;
    let Some(first_san) = fields.dns_names.first() else {
        return Err(format!(
            "{cert_file}: the certificate has no DNS name in its subjectAltName extension"
        ));
    };
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{key_file}: no private key (PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY; an encrypted key is \
             not supported)"
        ),
        e => format!("{key_file}: {}", pem_error(e)),
    })?;
    let signing_key = aws_lc_rs::sign::any_supported_type(&key).map_err(|e| {
        format!("{key_file}: unsupported private key (ECDSA P-256/P-384, Ed25519 or RSA expected): {e}")
    })?;
    let info = CertInfo {
        name: name.unwrap_or(first_san).to_owned(),
        sans: fields.dns_names.clone(),
        not_after: fields.not_after,
    };
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!("{key_file} does not match the certificate in {cert_file}"));
        }
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(format!(
                "{key_file}: cannot check that the key matches the certificate in {cert_file}"
            ));
        }
        Err(e) => return Err(format!("{cert_file}: {e}")),
    }
    Ok((Arc::new(certified), info))
}

/// Chooses each handshake's certificate from the set in force; a reload swaps the set under the lock.
#[derive(Debug)]
struct Resolver {
    set: RwLock<Arc<CertSet>>,
    strict_sni: bool,
}

impl Resolver {
    /// The set in force (the lock is held only to clone the `Arc`).
    fn current(&self) -> Arc<CertSet> {
        // A poisoned lock still holds a whole set: the writer only ever assigns an `Arc`.
        Arc::clone(&self.set.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn replace(&self, set: CertSet) {
        let mut guard = self.set.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(set);
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current();
        let index = match set.choose(hello.server_name(), hello.signature_schemes()) {
            Some(i) => i,
            None if self.strict_sni => return None,
            None => set.default,
        };
        set.keys.get(index).cloned()
    }
}
