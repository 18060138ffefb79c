//! Test peers: the real binary on an ephemeral port, scripted upstreams, and a raw-socket client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Generous bound for reads in tests: a hang fails the test instead of blocking CI.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The portcullis binary, started with `--listen 127.0.0.1:0`; ready once it logged its address.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
    /// The thread copying stderr into `log`: it ends when the process has exited and its stderr is closed.
    reader: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(args: &[&str]) -> Proxy {
        Proxy::start_with(Command::new(env!("CARGO_BIN_EXE_portcullis")), args)
    }

    /// Starts the binary through `cmd` (e.g. a shell that lowers a limit and `exec`s it).
    pub fn start_with(mut cmd: Command, args: &[&str]) -> Proxy {
        die_with_test(&mut cmd);
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portcullis");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        let reader = thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("info: listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.split_whitespace().next().unwrap().parse::<SocketAddr>().unwrap());
                    }
                }
                log2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = rx
            .recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|_| panic!("portcullis did not start: {}", log.lock().unwrap()));
        Proxy {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    /// Waits for the process to exit and for its last line of stderr; returns the exit status and all of it.
    pub fn exit_log(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status, self.log.lock().unwrap().clone())
    }

    /// Waits (within IO_TIMEOUT) until the process has logged `needle`.
    pub fn wait_log(&self, needle: &str) {
        let until = std::time::Instant::now() + IO_TIMEOUT;
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                std::time::Instant::now() < until,
                "never logged {needle:?}: {}",
                self.log.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(10)); // polling the log, the readiness signal here
        }
    }

    /// Starts in front of `up`, with `args` (and `--workers 1`, and `--rate 0` unless `args` set a rate).
    pub fn with_upstream(up: SocketAddr, args: &[&str]) -> Proxy {
        let u = up.to_string();
        let mut all = vec!["--upstream", u.as_str()];
        if !args.contains(&"--workers") {
            all.extend_from_slice(&["--workers", "1"]);
        }
        // Tests share one client address: the rate limit is off unless the test configures it.
        if !args.contains(&"--rate") {
            all.extend_from_slice(&["--rate", "0"]);
        }
        all.extend_from_slice(args);
        Proxy::start(&all)
    }

    /// In front of `up` with the JSON rules off (`--json-methods ''`): for tests of the proxy core, whose
    /// bodies are not JSON. The Accept rule always applies: core tests send `Accept: */*`.
    pub fn core(up: SocketAddr, args: &[&str]) -> Proxy {
        let mut all = vec!["--json-methods", ""];
        all.extend_from_slice(args);
        Proxy::with_upstream(up, &all)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a scripted upstream does with a request it read completely.
pub enum Action {
    /// Write these bytes and keep the connection.
    Respond(Vec<u8>),
    /// Write these bytes, then close.
    RespondClose(Vec<u8>),
    /// Say nothing, keep the connection open until the test ends.
    Silent,
    /// Write these bytes, then say nothing more and keep the connection open.
    RespondThenSilent(Vec<u8>),
    /// Close at once without answering.
    Close,
}

pub type Handler = dyn Fn(&Request) -> Action + Send + Sync;

/// A request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
    /// Index of the connection (in accept order) it arrived on.
    pub conn: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap()
    }
}

/// A scripted HTTP/1.1 upstream: parses requests (Content-Length framing only: the ingress always
/// forwards with Content-Length) and answers each as the handler says. Counts accepts; keeps every request.
pub struct Upstream {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Upstream {
    pub fn start(handler: impl Fn(&Request) -> Action + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (a, r) = (accepts.clone(), requests.clone());
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let conn = a.fetch_add(1, Ordering::SeqCst);
                let (h, r) = (handler.clone(), r.clone());
                thread::spawn(move || serve(s, conn, &*h, &r));
            }
        });
        Upstream {
            addr,
            accepts,
            requests,
        }
    }

    /// An upstream answering every request with 200 and `body`.
    pub fn ok(body: &'static str) -> Upstream {
        Upstream::start(move |_| Action::Respond(response(200, body)))
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

pub fn response(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve(mut s: TcpStream, conn: usize, handler: &Handler, log: &Mutex<Vec<Request>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        // Read a head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut req = Request {
            head,
            body: Vec::new(),
            conn,
        };
        let len: usize = req.header("content-length").map(|v| v.parse().unwrap()).unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        req.body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let action = handler(&req);
        log.lock().unwrap().push(req);
        match action {
            Action::Respond(b) => {
                if s.write_all(&b).is_err() {
                    return;
                }
            }
            Action::RespondClose(b) => {
                let _ = s.write_all(&b);
                return;
            }
            Action::RespondThenSilent(b) => {
                let _ = s.write_all(&b);
                thread::sleep(Duration::from_secs(60));
                return;
            }
            Action::Silent => {
                thread::sleep(Duration::from_secs(60));
                return;
            }
            Action::Close => return,
        }
    }
}

pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A raw-socket client (over TLS when made with [`Client::connect_tls`]).
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
    pub tls: Option<rustls::ClientConnection>,
}

/// A response as the client received it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// A client on a connected stream (e.g. one bound to a chosen source address first).
    pub fn from_stream(s: TcpStream) -> Client {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            buf: Vec::new(),
            tls: None,
        }
    }

    /// Connects over TLS to `addr`, asking for `name` (SNI), trusting `config`'s roots; the handshake runs
    /// with the first exchange.
    pub fn connect_tls(addr: SocketAddr, name: &str, config: std::sync::Arc<rustls::ClientConfig>) -> Client {
        let mut c = Client::connect(addr);
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        c.tls = Some(rustls::ClientConnection::new(config, name).unwrap());
        c
    }

    pub fn send(&mut self, b: &[u8]) {
        match self.tls.as_mut() {
            Some(t) => rustls::Stream::new(t, &mut self.s).write_all(b).unwrap(),
            None => self.s.write_all(b).unwrap(),
        }
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        let r = match self.tls.as_mut() {
            Some(t) => rustls::Stream::new(t, &mut self.s).read(&mut tmp),
            None => self.s.read(&mut tmp),
        };
        match r {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            // Over TLS: the server closed without a close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
            Err(e) => panic!("client read: {e}"),
        }
    }

    /// Reads one response (for a request that was not HEAD). `None` if the connection closed first.
    pub fn response(&mut self) -> Option<Response> {
        self.response_to(false)
    }

    /// Reads one response; `None` if the connection closed before a complete one arrived.
    pub fn response_to(&mut self, head_request: bool) -> Option<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill() {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_string();
        let status: u16 = head[9..12].parse().unwrap();
        let mut r = Response {
            status,
            head,
            body: Vec::new(),
        };
        self.buf.drain(..head_end);
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(r);
        }
        if r.header("transfer-encoding").is_some() {
            // Return the raw chunked body up to and including the last chunk.
            loop {
                if let Some(i) = find(&self.buf, b"0\r\n\r\n") {
                    r.body = self.buf.drain(..i + 5).collect();
                    return Some(r);
                }
                if !self.fill() {
                    return None;
                }
            }
        }
        match r.header("content-length") {
            Some(l) => {
                let l: usize = l.parse().unwrap();
                while self.buf.len() < l {
                    if !self.fill() {
                        return None;
                    }
                }
                r.body = self.buf.drain(..l).collect();
            }
            None => {
                while self.fill() {}
                r.body = std::mem::take(&mut self.buf);
            }
        }
        Some(r)
    }

    /// True if the peer closed the connection (no further bytes).
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }

    pub fn roundtrip(&mut self, req: &[u8]) -> Response {
        self.send(req);
        self.response().expect("a response")
    }
}

/// A GET for `path` with a Host field.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: application/json\r\n\r\n").into_bytes()
}

/// A self-signed ECDSA P-256 certificate for `name` (a DNS SAN, and 127.0.0.1) with its key, made by
/// `openssl req` in `dir`: (certificate, key).
pub fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-addext", &format!("subjectAltName=DNS:{name},IP:127.0.0.1")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (crt, key)
}

/// A port with nothing listening on it.
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A fresh, empty directory under the system temp dir for one test; removed (with its files) on drop.
pub fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("portcullis-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// See [`temp_dir`].
pub struct TempDir(pub std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Proxy {
    /// The TLS listener's address the binary logged (needs `--tls-listen 127.0.0.1:0`).
    pub fn tls_addr(&self) -> SocketAddr {
        let log = self.log.lock().unwrap();
        let rest = log.split("TLS listening on ").nth(1).expect("TLS address in the log");
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The admin address the binary logged (needs `--admin 127.0.0.1:0`).
    pub fn admin_addr(&self) -> SocketAddr {
        let log = self.log.lock().unwrap();
        let rest = log
            .split("admin listening on ")
            .nth(1)
            .expect("admin address in the log");
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// GET `path` on the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let mut c = Client::connect(self.admin_addr());
        c.send(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes());
        let r = c.response().expect("admin answer");
        (r.status, String::from_utf8(r.body).unwrap())
    }
}

impl Proxy {
    /// The value of an unlabelled metric on the admin listener.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.admin_get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Polls the admin listener until metric `name` equals `want` (fails after `IO_TIMEOUT`).
    pub fn wait_metric(&self, name: &str, want: f64) {
        let until = std::time::Instant::now() + IO_TIMEOUT;
        while self.metric(name) != Some(want) {
            assert!(
                std::time::Instant::now() < until,
                "{name} never became {want}: {:?}\n{}",
                self.metric(name),
                self.log.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20)); // polling the readiness signal itself
        }
    }
}

/// A real `redis-server` (Debian package `redis-server`; `.ci/run` installs it) on 127.0.0.1, persistence
/// off; ready once it logged that it accepts connections. Killed on drop.
pub struct RedisServer {
    pub child: Child,
    pub port: u16,
    /// The fleet's shared secret (`--secret-file`) for the nodes of this Redis.
    pub secret: SecretFile,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        RedisServer::start_on(port)
    }

    pub fn start_on(port: u16) -> RedisServer {
        let mut cmd = Command::new("redis-server");
        die_with_test(&mut cmd);
        let mut child = cmd
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; .ci/run installs it)");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        rx.recv_timeout(IO_TIMEOUT).expect("redis-server did not start");
        RedisServer {
            child,
            port,
            secret: SecretFile::new("fleet"),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The `--secret-file` path for this fleet's nodes.
    pub fn secret_path(&self) -> String {
        self.secret.path.to_string_lossy().into_owned()
    }

    /// Stops it (SIGSTOP: connections still open, accepted by the kernel, never answered: a Redis that hangs).
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} redis-server");
    }

    /// Kills it (SIGKILL: its state is lost) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Proxy {
    /// Polls the admin listener until its metrics text holds `line` (fails after `IO_TIMEOUT`).
    pub fn wait_metrics_line(&self, line: &str) {
        let until = std::time::Instant::now() + IO_TIMEOUT;
        while !self.admin_get("/metrics").1.lines().any(|l| l == line) {
            assert!(
                std::time::Instant::now() < until,
                "never saw {line}\n{}",
                self.log.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20)); // polling the readiness signal itself
        }
    }
}

/// The child is killed when the thread that started it (the test) ends, even if a panic left a handle to it
/// in another thread (Drop would not run then).
pub fn die_with_test(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A `--secret-file` with 40 bytes of secret, unique to this test; removed on drop.
pub struct SecretFile {
    pub path: std::path::PathBuf,
}

impl SecretFile {
    pub fn new(name: &str) -> SecretFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("portcullis-test-{}-{name}-{n}.secret", std::process::id()));
        let secret = format!("{:040}", std::process::id() as usize * 1000 + n);
        std::fs::write(&path, secret).unwrap();
        SecretFile { path }
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bytes waiting in the receive queue of the TCP socket `local` → `remote` (IPv4, from /proc/net/tcp), or
/// `None` if there is no such socket.
pub fn rx_queued(local: SocketAddr, remote: SocketAddr) -> Option<usize> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()),
        SocketAddr::V6(_) => panic!("rx_queued: IPv4 only"),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 4 && f[1] == l && f[2] == r).then(|| {
            let rx = f[4].split(':').nth(1).unwrap();
            usize::from_str_radix(rx, 16).unwrap()
        })
    })
}

/// Waits until the kernel holds unread bytes for the socket `local` → `remote` (fails after `IO_TIMEOUT`).
pub fn wait_rx_queued(local: SocketAddr, remote: SocketAddr) {
    let until = std::time::Instant::now() + IO_TIMEOUT;
    while rx_queued(local, remote).unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < until,
            "no bytes ever queued for {local} <- {remote}"
        );
        thread::sleep(Duration::from_millis(1)); // polling the readiness signal itself
    }
}

impl Proxy {
    /// SIGSTOP, then waits until every thread of the process is stopped: events that arrive now are all
    /// seen by the next `epoll_wait`, in one batch, after `resume`.
    pub fn pause(&self) {
        self.signal("STOP");
        let dir = format!("/proc/{}/task", self.child.id());
        let until = std::time::Instant::now() + IO_TIMEOUT;
        loop {
            let all_stopped = std::fs::read_dir(&dir).unwrap().all(|t| {
                let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                // The state follows the parenthesised command name.
                matches!(stat.rsplit(") ").next().and_then(|s| s.chars().next()), Some('T' | 't'))
            });
            if all_stopped {
                return;
            }
            assert!(std::time::Instant::now() < until, "portcullis never stopped");
            thread::sleep(Duration::from_millis(1)); // polling the readiness signal itself
        }
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal("CONT");
    }
}

/// A process's resident memory (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `n` GETs of user `auth` (its Authorization value) at `per_sec`, alternating between the nodes, on an
/// absolute schedule. Every answer must be 200 or 429 and come back (a stall fails the read). After
/// `signal.0` requests, `signal.1` is sent once. Returns the 200s per node.
pub fn alternate_signalling(
    nodes: &[&Proxy],
    auth: &str,
    per_sec: u64,
    n: u64,
    signal: Option<(u64, mpsc::Sender<()>)>,
) -> Vec<u64> {
    let req = format!("GET /f HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nAuthorization: {auth}\r\n\r\n");
    let mut cs: Vec<Client> = nodes.iter().map(|p| p.connect()).collect();
    let mut ok = vec![0; nodes.len()];
    let start = std::time::Instant::now();
    for i in 0..n {
        if let Some((after, tx)) = &signal {
            if i == *after {
                tx.send(()).unwrap();
            }
        }
        let at = start + Duration::from_micros(i * 1_000_000 / per_sec);
        if let Some(d) = at.checked_duration_since(std::time::Instant::now()) {
            thread::sleep(d); // pacing the load, not synchronising
        }
        let k = i as usize % nodes.len();
        let r = cs[k].roundtrip(req.as_bytes());
        match r.status {
            200 => ok[k] += 1,
            429 => assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1),
            s => panic!("{auth}: unexpected {s}"),
        }
    }
    ok
}

/// [`alternate_signalling`] without a signal.
pub fn alternate(nodes: &[&Proxy], auth: &str, per_sec: u64, n: u64) -> Vec<u64> {
    alternate_signalling(nodes, auth, per_sec, n, None)
}
