//! The two things the proxy reads from an X.509 certificate itself (RFC 5280): the DNS names of its subject
//! alternative names, and its notAfter time. A small DER walk over the TBSCertificate, nothing else; the
//! certificate is otherwise checked by rustls.

use std::time::SystemTime;

/// What is read from one DER certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// dNSName entries of the subjectAltName extension, lower case, in order.
    pub dns_names: Vec<String>,
    pub not_after: SystemTime,
}

/// Reads the fields from a DER-encoded certificate; `Err` says what is malformed.
pub fn fields(der: &[u8]) -> Result<Fields, String> {
    let _ = der;
    todo!()
}
