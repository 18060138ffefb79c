//! The built-in echo upstream, started when no `--upstream` is given so that a fresh checkout shows a working
//! ingress. It answers every request with 200 and a small JSON description of what it received. It is a demo
//! and test peer (a thread per connection), not part of the request path.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

/// Binds 127.0.0.1 on an ephemeral port and serves in background threads. Returns the bound address.
pub fn start() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::Builder::new().name("echo-upstream".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = thread::Builder::new()
                .name("echo-conn".into())
                .spawn(move || serve(stream));
        }
    })?;
    Ok(addr)
}

fn serve(stream: TcpStream) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut head = Vec::new();
        loop {
            let n = reader.read_until(b'\n', &mut head)?;
            if n == 0 {
                return Ok(());
            }
            if head.ends_with(b"\r\n\r\n") || head == b"\r\n" {
                break;
            }
            if head.len() > 1 << 20 {
                return Ok(());
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
            out.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        let len = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let mut body = Vec::new();
        (&mut reader).take(len).read_to_end(&mut body)?;
        let mut fields = String::new();
        for h in req.headers.iter() {
            if !fields.is_empty() {
                fields.push(',');
            }
            fields.push_str(&format!("{}:{}", json_str(h.name.as_bytes()), json_str(h.value)));
        }
        let desc = format!(
            "{{\"echo\":true,\"method\":{},\"target\":{},\"headers\":{{{}}},\"body_bytes\":{}}}\n",
            json_str(req.method.unwrap_or("").as_bytes()),
            json_str(req.path.unwrap_or("").as_bytes()),
            fields,
            body.len()
        );
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            desc.len(),
            desc
        );
        out.write_all(resp.as_bytes())?;
    }
}

/// A JSON string literal for arbitrary bytes (invalid UTF-8 replaced).
fn json_str(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
