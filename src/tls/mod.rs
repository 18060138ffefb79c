//! TLS termination: the certificates (loaded from PEM files, chosen by SNI, reloaded in place) and the
//! rustls server configuration every TLS listener's connections are made from.
//!
//! The configuration is built once and kept for the process's life: its session ticketer and its stateful
//! session cache survive certificate reloads (a reload swaps the certificate set inside the resolver only),
//! so a reload never ends resumption.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod x509;

/// The lowest protocol version accepted (`--tls-min-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
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

/// The TLS side of the process: the server configuration (shared by every TLS connection of every worker)
/// and the certificate set behind it.
pub struct Tls {
    // (private: the rustls config, the resolver holding the current certificate set)
}

impl Tls {
    /// Loads every certificate and builds the server configuration. An error names the file and what is
    /// wrong with it (unreadable, no certificate, no key, a key that does not match its certificate, an
    /// unsupported key type, a certificate without a DNS name, a default that names no certificate).
    pub fn load(settings: &Settings) -> Result<Tls, String> {
        let _ = settings;
        todo!()
    }

    /// The configuration to make each TLS connection from.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        todo!()
    }

    /// Re-reads every certificate (same settings): on success new handshakes use the new set (established
    /// connections continue); on any error the old set stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        todo!()
    }

    /// The certificates in force, in the order they were configured.
    pub fn certs(&self) -> Vec<CertInfo> {
        todo!()
    }

    /// One line for each certificate in force that expires within `--tls-expiry-warn` of `now` (or has
    /// expired), e.g. `certificate "a" (a.example.com) expires in 3 days (2026-12-10 12:00:00 UTC)`.
    pub fn expiry_warnings(&self, now: SystemTime) -> Vec<String> {
        let _ = now;
        todo!()
    }
}
