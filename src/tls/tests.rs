//! The certificate side against real certificates (made by the `openssl` command in a temporary directory) and
//! real in-memory handshakes: a rustls client connection pumped byte for byte against a server connection
//! made from `Tls::server_config()`.

use super::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, ServerConnection};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory removed (with its files) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "portcullis-tls-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Clone, Copy)]
enum Kind {
    P256,
    P384,
    Ed25519,
    Rsa,
}

/// Makes `dir/STEM.crt` and `dir/STEM.key`: a self-signed certificate for `days` days with these DNS SANs
/// (none: no subjectAltName extension).
fn make_cert(dir: &TempDir, stem: &str, kind: Kind, days: u32, sans: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.path(&format!("{stem}.crt")), dir.path(&format!("{stem}.key")));
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-nodes", "-newkey"]);
    match kind {
        Kind::P256 => cmd.args(["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        Kind::P384 => cmd.args(["ec", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        Kind::Ed25519 => cmd.args(["ed25519"]),
        Kind::Rsa => cmd.args(["rsa:2048"]),
    };
    cmd.args(["-days", &days.to_string(), "-subj", &format!("/CN={stem}")]);
    if !sans.is_empty() {
        let list: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
        cmd.args(["-addext", &format!("subjectAltName={}", list.join(","))]);
    }
    cmd.arg("-keyout").arg(&key).arg("-out").arg(&cert);
    let out = cmd.output().expect("the openssl command");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn der_of(cert: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(cert).unwrap().to_vec()
}

fn settings(pairs: Vec<(PathBuf, PathBuf)>) -> Settings {
    Settings {
        pairs,
        dir: None,
        default_cert: None,
        strict_sni: false,
        min_version: MinVersion::Tls12,
        expiry_warn: Duration::from_secs(14 * 86_400),
    }
}

/// Accepts any certificate (the test compares the presented one itself) but checks the handshake signatures
/// for real, so a server that does not hold the certificate's key fails. `schemes` limits what it offers.
#[derive(Debug)]
struct AnyCert {
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
    schemes: Option<Vec<SignatureScheme>>,
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone().unwrap_or_else(|| self.algs.supported_schemes())
    }
}

struct Client {
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    alpn: Vec<Vec<u8>>,
    schemes: Option<Vec<SignatureScheme>>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            alpn: vec![b"http/1.1".to_vec()],
            schemes: None,
        }
    }
}

impl Client {
    fn tls12() -> Client {
        Client {
            versions: vec![&rustls::version::TLS12],
            ..Client::default()
        }
    }

    fn config(&self) -> Arc<ClientConfig> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let verifier = AnyCert {
            algs: provider.signature_verification_algorithms,
            schemes: self.schemes.clone(),
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = self.alpn.clone();
        Arc::new(config)
    }
}

/// The outcome of one in-memory handshake.
struct Done {
    client: ClientConnection,
    server: ServerConnection,
}

impl Done {
    /// The end-entity certificate the server presented.
    fn presented(&self) -> Vec<u8> {
        self.client.peer_certificates().unwrap()[0].to_vec()
    }
}

/// Runs a full handshake (and the TLS 1.3 tickets after it) in memory; `sni` `None` sends no SNI. `Err` has
/// the server's error and the client's.
fn handshake(tls: &Tls, config: Arc<ClientConfig>, sni: Option<&str>) -> Result<Done, (String, String)> {
    let name = ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_owned()).unwrap();
    let config = if sni.is_none() {
        let mut c = (*config).clone();
        c.enable_sni = false;
        Arc::new(c)
    } else {
        config
    };
    let mut client = ClientConnection::new(config, name).unwrap();
    let mut server = ServerConnection::new(tls.server_config()).unwrap();
    let (mut server_err, mut client_err) = (String::new(), String::new());
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() && server_err.is_empty() {
            server.read_tls(&mut rd).unwrap();
            if let Err(e) = server.process_new_packets() {
                server_err = e.to_string();
            }
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() && client_err.is_empty() {
            client.read_tls(&mut rd).unwrap();
            if let Err(e) = client.process_new_packets() {
                client_err = e.to_string();
            }
        }
        if !server_err.is_empty() || !client_err.is_empty() {
            return Err((server_err, client_err));
        }
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() && !server.wants_write() {
            return Ok(Done { client, server });
        }
    }
    panic!("the handshake did not finish");
}

fn ok(tls: &Tls, sni: Option<&str>) -> Vec<u8> {
    match handshake(tls, Client::default().config(), sni) {
        Ok(done) => done.presented(),
        Err(e) => panic!("handshake for {sni:?} failed: {e:?}"),
    }
}

#[test]
fn fields_of_generated_certificates() {
    let dir = TempDir::new();
    let now = SystemTime::now();
    for (i, kind) in [Kind::P256, Kind::P384, Kind::Ed25519, Kind::Rsa]
        .into_iter()
        .enumerate()
    {
        let days = 10 + 100 * i as u32;
        let (cert, _) = make_cert(
            &dir,
            &format!("k{i}"),
            kind,
            days,
            &["A.Example.com", "*.b.example.com"],
        );
        let der = der_of(&cert);
        let f = x509::fields(&der).unwrap();
        assert_eq!(f.dns_names, ["a.example.com", "*.b.example.com"]);
        let expected = x509::unix_seconds(now) + i64::from(days) * 86_400;
        assert!((x509::unix_seconds(f.not_after) - expected).abs() < 86_400);
        for n in 0..der.len() {
            assert!(x509::fields(&der[..n]).is_err());
        }
    }
}

#[test]
fn pairs_load_in_order_and_every_key_type_handshakes() {
    let dir = TempDir::new();
    let pairs = vec![
        make_cert(&dir, "p256", Kind::P256, 30, &["p256.example", "alt.example"]),
        make_cert(&dir, "p384", Kind::P384, 30, &["p384.example"]),
        make_cert(&dir, "ed", Kind::Ed25519, 30, &["*.ed.example"]),
        make_cert(&dir, "rsa", Kind::Rsa, 30, &["rsa.example"]),
    ];
    let tls = Tls::load(&settings(pairs.clone())).unwrap();
    let names: Vec<String> = tls.certs().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["p256.example", "p384.example", "*.ed.example", "rsa.example"]);
    assert_eq!(tls.certs()[0].sans, ["p256.example", "alt.example"]);
    for (sni, (cert, _)) in ["p256.example", "p384.example", "x.ed.example", "rsa.example"]
        .iter()
        .zip(&pairs)
    {
        for client in [Client::default(), Client::tls12()] {
            let done = handshake(&tls, client.config(), Some(sni)).unwrap();
            assert_eq!(done.presented(), der_of(cert), "{sni}");
        }
    }
    assert_eq!(ok(&tls, Some("alt.example")), der_of(&pairs[0].0));
}

#[test]
fn directory_loads_in_byte_order_of_names() {
    let dir = TempDir::new();
    let (b, _) = make_cert(&dir, "b", Kind::P256, 30, &["b.example"]);
    make_cert(&dir, "a", Kind::P256, 30, &["a.example"]);
    let (upper, _) = make_cert(&dir, "B", Kind::P256, 30, &["upper.example"]);
    std::fs::write(dir.path("README"), "not a certificate").unwrap();
    std::fs::write(dir.path("a.crt.tmp"), "not a certificate").unwrap();
    let mut s = settings(vec![]);
    s.dir = Some(dir.0.clone());
    let tls = Tls::load(&s).unwrap();
    let names: Vec<String> = tls.certs().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["B", "a", "b"]);
    // No SNI: the first NAME in byte order.
    assert_eq!(ok(&tls, None), der_of(&upper));
    s.default_cert = Some("b".into());
    let tls = Tls::load(&s).unwrap();
    assert_eq!(ok(&tls, None), der_of(&b));
    assert_eq!(ok(&tls, Some("nothing.example")), der_of(&b));

    // Pairs come before the directory's files.
    let other = TempDir::new();
    let (first, first_key) = make_cert(&other, "first", Kind::P256, 30, &["first.example"]);
    s.pairs = vec![(first.clone(), first_key)];
    s.default_cert = None;
    let tls = Tls::load(&s).unwrap();
    let names: Vec<String> = tls.certs().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["first.example", "B", "a", "b"]);
    assert_eq!(ok(&tls, None), der_of(&first));

    // A certificate without its key, and a key without its certificate.
    std::fs::write(dir.path("c.crt"), std::fs::read(&b).unwrap()).unwrap();
    let err = Tls::load(&s).unwrap_err();
    assert!(err.contains("c.crt") && err.contains("c.key"), "{err}");
    std::fs::remove_file(dir.path("c.crt")).unwrap();
    std::fs::write(dir.path("d.key"), std::fs::read(dir.path("b.key")).unwrap()).unwrap();
    let err = Tls::load(&s).unwrap_err();
    assert!(err.contains("d.key") && err.contains("d.crt"), "{err}");

    // An empty directory, and a missing one.
    let empty = TempDir::new();
    let mut s = settings(vec![]);
    s.dir = Some(empty.0.clone());
    assert!(Tls::load(&s).unwrap_err().contains(&empty.0.display().to_string()));
    s.dir = Some(empty.path("missing"));
    assert!(Tls::load(&s).unwrap_err().contains("missing"));
}

#[test]
fn default_certificate_rules() {
    let dir = TempDir::new();
    let a = make_cert(&dir, "a", Kind::P256, 30, &["a.example"]);
    let b = make_cert(&dir, "b", Kind::Rsa, 30, &["b.example"]);
    let mut s = settings(vec![a.clone(), b.clone()]);
    let tls = Tls::load(&s).unwrap();
    assert_eq!(ok(&tls, None), der_of(&a.0));
    assert_eq!(ok(&tls, Some("unknown.example")), der_of(&a.0));
    assert_eq!(ok(&tls, Some("b.example")), der_of(&b.0));
    s.default_cert = Some("b.example".into());
    let tls = Tls::load(&s).unwrap();
    assert_eq!(ok(&tls, None), der_of(&b.0));
    assert_eq!(ok(&tls, Some("unknown.example")), der_of(&b.0));
    assert_eq!(ok(&tls, Some("a.example")), der_of(&a.0));
    s.default_cert = Some("c".into());
    let err = Tls::load(&s).unwrap_err();
    assert!(err.contains("\"c\"") && err.contains("a.example, b.example"), "{err}");
}

#[test]
fn wildcard_and_precedence_rules() {
    let dir = TempDir::new();
    let wild = make_cert(&dir, "wild", Kind::P256, 30, &["*.example.com"]);
    let www = make_cert(&dir, "www", Kind::P256, 30, &["www.example.com"]);
    let apex = make_cert(&dir, "apex", Kind::P256, 30, &["example.com", "other.example"]);
    let dup = make_cert(&dir, "dup", Kind::P256, 30, &["other.example", "*.example.com"]);
    let mut s = settings(vec![apex.clone(), wild.clone(), www.clone(), dup.clone()]);
    let tls = Tls::load(&s).unwrap();
    assert_eq!(ok(&tls, Some("a.example.com")), der_of(&wild.0));
    assert_eq!(ok(&tls, Some("A.Example.COM")), der_of(&wild.0));
    // Exact before wildcard, though the wildcard is configured first.
    assert_eq!(ok(&tls, Some("www.example.com")), der_of(&www.0));
    assert_eq!(ok(&tls, Some("WWW.example.com")), der_of(&www.0));
    assert_eq!(ok(&tls, Some("example.com")), der_of(&apex.0));
    // The first configured among several naming it.
    assert_eq!(ok(&tls, Some("other.example")), der_of(&apex.0));
    // One label only: b.a.example.com is not covered (default: the first pair).
    s.default_cert = Some("www.example.com".into());
    let tls = Tls::load(&s).unwrap();
    assert_eq!(ok(&tls, Some("b.a.example.com")), der_of(&www.0));
    // Without the exact apex, example.com is not covered by the wildcard either.
    let tls = Tls::load(&settings(vec![wild.clone(), www.clone()])).unwrap();
    assert_eq!(ok(&tls, Some("example.com")), der_of(&wild.0), "the default: first");
    let tls = Tls::load(&settings(vec![www.clone(), wild.clone()])).unwrap();
    assert_eq!(ok(&tls, Some("example.com")), der_of(&www.0), "the default: first");

    let set = tls.resolver.current();
    assert_eq!(set.lookup("a.example.com"), Some(&[1][..]));
    assert_eq!(set.lookup("a.example.com."), Some(&[1][..]));
    assert_eq!(set.lookup("WWW.EXAMPLE.COM"), Some(&[0][..]));
    for miss in [
        "example.com",
        "b.a.example.com",
        ".example.com",
        "*.example.com",
        "com",
        "",
        ".",
    ] {
        assert_eq!(set.lookup(miss), None, "{miss}");
    }
}

#[test]
fn among_equals_the_first_whose_key_the_client_can_use() {
    let dir = TempDir::new();
    let ec = make_cert(&dir, "ec", Kind::P256, 30, &["dual.example"]);
    let rsa = make_cert(&dir, "rsa", Kind::Rsa, 30, &["dual.example"]);
    let tls = Tls::load(&settings(vec![ec.clone(), rsa.clone()])).unwrap();
    assert_eq!(ok(&tls, Some("dual.example")), der_of(&ec.0));
    let rsa_only = Client {
        schemes: Some(vec![SignatureScheme::RSA_PSS_SHA256, SignatureScheme::RSA_PKCS1_SHA256]),
        ..Client::default()
    };
    let done = handshake(&tls, rsa_only.config(), Some("dual.example")).unwrap();
    assert_eq!(done.presented(), der_of(&rsa.0));
}

#[test]
fn strict_sni_refuses_unknown_and_missing_names() {
    let dir = TempDir::new();
    let a = make_cert(&dir, "a", Kind::P256, 30, &["a.example", "*.w.example"]);
    let mut s = settings(vec![a.clone()]);
    s.strict_sni = true;
    let tls = Tls::load(&s).unwrap();
    assert_eq!(ok(&tls, Some("a.example")), der_of(&a.0));
    assert_eq!(ok(&tls, Some("x.w.example")), der_of(&a.0));
    for sni in [None, Some("b.example"), Some("y.x.w.example")] {
        let Err((server, client)) = handshake(&tls, Client::default().config(), sni) else {
            panic!("{sni:?} was served");
        };
        assert!(server.contains("no server certificate"), "{server}");
        assert!(client.contains("AccessDenied"), "{client}");
    }
}

#[test]
fn versions_and_alpn() {
    let dir = TempDir::new();
    let a = make_cert(&dir, "a", Kind::P256, 30, &["a.example"]);
    let mut s = settings(vec![a.clone()]);
    let tls = Tls::load(&s).unwrap();
    let done = handshake(&tls, Client::tls12().config(), Some("a.example")).unwrap();
    assert_eq!(done.server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    let done = handshake(&tls, Client::default().config(), Some("a.example")).unwrap();
    assert_eq!(done.server.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));

    s.min_version = MinVersion::Tls13;
    let tls13 = Tls::load(&s).unwrap();
    let Err((server, client)) = handshake(&tls13, Client::tls12().config(), Some("a.example")) else {
        panic!("a TLS 1.2-only client was served");
    };
    assert!(server.contains("peer is incompatible"), "{server}");
    assert!(client.contains("ProtocolVersion"), "{client}");
    assert!(handshake(&tls13, Client::default().config(), Some("a.example")).is_ok());

    // ALPN: http/1.1 chosen from h2,http/1.1; no ALPN is fine; h2 alone is refused (RFC 7301).
    for t in [&tls, &tls13] {
        let h2_first = Client {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..Client::default()
        };
        let done = handshake(t, h2_first.config(), Some("a.example")).unwrap();
        assert_eq!(done.client.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(done.server.alpn_protocol(), Some(&b"http/1.1"[..]));
        let none = Client {
            alpn: vec![],
            ..Client::default()
        };
        let done = handshake(t, none.config(), Some("a.example")).unwrap();
        assert_eq!(done.server.alpn_protocol(), None);
        let h2 = Client {
            alpn: vec![b"h2".to_vec()],
            ..Client::default()
        };
        let Err((_, client)) = handshake(t, h2.config(), Some("a.example")) else {
            panic!("h2 was accepted");
        };
        assert!(client.contains("NoApplicationProtocol"), "{client}");
    }
}

#[test]
fn load_errors_name_the_file() {
    let dir = TempDir::new();
    let a = make_cert(&dir, "a", Kind::P256, 30, &["a.example"]);
    let b = make_cert(&dir, "b", Kind::Rsa, 30, &["b.example"]);
    let show = |p: &Path| p.display().to_string();

    let err = Tls::load(&settings(vec![(a.0.clone(), b.1.clone())])).unwrap_err();
    assert!(
        err.contains(&show(&a.0)) && err.contains(&show(&b.1)) && err.contains("does not match"),
        "{err}"
    );

    let missing = dir.path("missing.crt");
    let err = Tls::load(&settings(vec![(missing.clone(), a.1.clone())])).unwrap_err();
    assert!(err.contains(&show(&missing)) && err.contains("cannot read"), "{err}");
    let err = Tls::load(&settings(vec![(a.0.clone(), dir.path("missing.key"))])).unwrap_err();
    assert!(err.contains("missing.key") && err.contains("cannot read"), "{err}");

    // A key file given as the certificate (no CERTIFICATE), a certificate as the key (no key).
    let err = Tls::load(&settings(vec![(a.1.clone(), a.1.clone())])).unwrap_err();
    assert!(err.contains(&show(&a.1)) && err.contains("no CERTIFICATE"), "{err}");
    let err = Tls::load(&settings(vec![(a.0.clone(), a.0.clone())])).unwrap_err();
    assert!(err.contains(&show(&a.0)) && err.contains("no private key"), "{err}");

    // No DNS SAN.
    let bare = make_cert(&dir, "bare", Kind::P256, 30, &[]);
    let err = Tls::load(&settings(vec![bare.clone()])).unwrap_err();
    assert!(err.contains(&show(&bare.0)) && err.contains("no DNS name"), "{err}");

    // Garbage inside the PEM armour, and a truncated certificate.
    let garbage = dir.path("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Tls::load(&settings(vec![(garbage.clone(), a.1.clone())])).unwrap_err();
    assert!(
        err.contains(&show(&garbage)) && err.contains("malformed certificate"),
        "{err}"
    );
    let text = std::fs::read_to_string(&a.0).unwrap();
    std::fs::write(&garbage, &text[..text.len() / 2]).unwrap();
    let err = Tls::load(&settings(vec![(garbage.clone(), a.1.clone())])).unwrap_err();
    assert!(err.contains(&show(&garbage)), "{err}");

    // An unsupported key type (X25519 cannot sign).
    let x = dir.path("x25519.key");
    let out = Command::new("openssl")
        .args(["genpkey", "-algorithm", "X25519", "-out"])
        .arg(&x)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = Tls::load(&settings(vec![(a.0.clone(), x.clone())])).unwrap_err();
    assert!(err.contains(&show(&x)) && err.contains("unsupported"), "{err}");

    assert!(Tls::load(&settings(vec![])).unwrap_err().contains("no TLS certificate"));
}

#[test]
fn reload_swaps_the_set_and_keeps_resumption() {
    let dir = TempDir::new();
    let (cert, key) = make_cert(&dir, "site", Kind::P256, 30, &["site.example"]);
    let old = der_of(&cert);
    let tls = Tls::load(&settings(vec![(cert.clone(), key.clone())])).unwrap();
    let config = tls.server_config();
    // Clients that have each got a session before the reload: TLS 1.3 ticket, TLS 1.2 ticket, TLS 1.2 session
    // ID (the stateful cache).
    let mut session_id = Client::tls12().config();
    {
        let c = Arc::get_mut(&mut session_id).unwrap();
        c.resumption = rustls::client::Resumption::in_memory_sessions(8)
            .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    }
    let clients = [Client::default().config(), Client::tls12().config(), session_id];
    for c in &clients {
        let done = handshake(&tls, Arc::clone(c), Some("site.example")).unwrap();
        assert_eq!(done.server.handshake_kind(), Some(HandshakeKind::Full));
        assert_eq!(done.presented(), old);
    }

    // A new certificate in the same files (another name too).
    std::fs::remove_file(&cert).unwrap();
    std::fs::remove_file(&key).unwrap();
    make_cert(&dir, "site", Kind::Ed25519, 60, &["site.example", "new.example"]);
    let new = der_of(&cert);
    assert_ne!(new, old);
    tls.reload().unwrap();
    assert!(Arc::ptr_eq(&config, &tls.server_config()));
    assert_eq!(tls.certs()[0].sans, ["site.example", "new.example"]);
    assert_eq!(ok(&tls, Some("site.example")), new);
    assert_eq!(ok(&tls, Some("new.example")), new);
    for (i, c) in clients.iter().enumerate() {
        let done = handshake(&tls, Arc::clone(c), Some("site.example")).unwrap();
        assert_eq!(done.server.handshake_kind(), Some(HandshakeKind::Resumed), "client {i}");
    }

    // A broken reload (a mismatched key, then a missing file) keeps the set in force.
    let (_, other_key) = make_cert(&dir, "other", Kind::Ed25519, 30, &["other.example"]);
    std::fs::copy(&other_key, &key).unwrap();
    let err = tls.reload().unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(ok(&tls, Some("new.example")), new);
    std::fs::remove_file(&cert).unwrap();
    assert!(tls.reload().unwrap_err().contains("cannot read"));
    assert_eq!(ok(&tls, Some("new.example")), new);
    assert_eq!(tls.certs()[0].sans, ["site.example", "new.example"]);
}

#[test]
fn expiry_warnings_within_the_window() {
    let dir = TempDir::new();
    let soon = make_cert(&dir, "soon", Kind::P256, 3, &["soon.example", "*.soon.example"]);
    let later = make_cert(&dir, "later", Kind::P256, 60, &["later.example"]);
    let tls = Tls::load(&settings(vec![soon, later])).unwrap();
    let now = SystemTime::now();
    let lines = tls.expiry_warnings(now);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("certificate \"soon.example\" (soon.example, *.soon.example) expires in 2 days (")
            || lines[0].starts_with("certificate \"soon.example\" (soon.example, *.soon.example) expires in 3 days ("),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(" UTC)"), "{}", lines[0]);
    assert!(tls.expiry_warnings(now - Duration::from_secs(30 * 86_400)).is_empty());
    let lines = tls.expiry_warnings(now + Duration::from_secs(50 * 86_400));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(") expired 47 days ago (") || lines[0].contains(") expired 46 days ago ("),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"later.example\" (later.example) expires in "),
        "{}",
        lines[1]
    );
    let info = &tls.certs()[1];
    assert_eq!(info.not_after_unix(), x509::unix_seconds(info.not_after));

    assert_eq!(span(Duration::from_secs(1)), "1 second");
    assert_eq!(span(Duration::from_secs(59)), "59 seconds");
    assert_eq!(span(Duration::from_secs(3600)), "1 hour");
    assert_eq!(span(Duration::from_secs(2 * 86_400 + 5)), "2 days");
}
