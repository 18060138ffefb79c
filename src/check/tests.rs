//! The library against itself: raw bytes and `Parts` agree; HTTP/2 heads; answers as `http` responses.

use super::*;

fn checker(o: Options) -> Checker {
    Checker::new(&o, Instant::now(), Seed([1, 2, 3, 4, 5, 6, 7, 8])).unwrap()
}

/// The same request, as raw bytes and as `Parts`, gets the same decision.
#[test]
fn raw_and_parts_agree() {
    let c = checker(Options {
        accept: vec!["application/vnd.a.v1+json".into()],
        rate: 0,
        ..Options::default()
    });
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    let now = Instant::now();
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.a.v2+json\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.a.v1+json\r\n\r\n",
        b"GET http://b/x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"GET http://a:80/x HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.a.v1+json\r\n\r\n",
        b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.0\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: nothing\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    ];
    for raw in cases {
        let mut storage = header_storage();
        let from_raw = c
            .parse_head(raw, &mut storage)
            .map(Option::unwrap)
            .and_then(|h| c.check_head(&mut c.scratch(), &h, peer, now))
            .map(|v| v.api_version());
        // The same request through `http`'s types.
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut fields);
        req.parse(raw).unwrap();
        let mut b = http::Request::builder()
            .method(req.method.unwrap())
            .uri(req.path.unwrap())
            .version(if req.version == Some(0) {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            });
        for f in req.headers.iter() {
            b = b.header(f.name, f.value);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let from_parts = c
            .check_parts(&mut c.scratch(), &parts, peer, now)
            .map(|v| v.api_version());
        assert_eq!(
            from_raw.map_err(|r| r.code()),
            from_parts.map_err(|r| r.code()),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn parts_fields_reuse_their_allocation() {
    let c = checker(Options::default());
    let mut s = c.scratch();
    let (parts, ()) = http::Request::get("/")
        .header("host", "a")
        .header("accept", "*/*")
        .body(())
        .unwrap()
        .into_parts();
    c.check_parts(&mut s, &parts, "192.0.2.1".parse().unwrap(), Instant::now())
        .unwrap();
    let cap = s.fields.capacity();
    assert!(cap >= 2 && s.fields.is_empty());
    let at = s.fields.as_ptr();
    c.check_parts(&mut s, &parts, "192.0.2.1".parse().unwrap(), Instant::now())
        .unwrap();
    assert_eq!((s.fields.capacity(), s.fields.as_ptr()), (cap, at));
}

#[test]
fn http2_requests_take_host_from_the_authority() {
    let c = checker(Options::default());
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    let req = |method: &str, ct: Option<&str>| {
        let mut b = http::Request::builder()
            .method(method)
            .uri("https://api.example/orders")
            .version(http::Version::HTTP_2)
            .header("accept", "*/*");
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        b.body(()).unwrap().into_parts().0
    };
    let mut s = c.scratch();
    assert!(c.check_parts(&mut s, &req("GET", None), peer, Instant::now()).is_ok());
    // A POST without Content-Length may have a body: its Content-Type is checked once the body is known.
    let mut v = c
        .check_parts(&mut s, &req("POST", Some("text/plain")), peer, Instant::now())
        .unwrap();
    assert!(v.json_body());
    assert!(c.check_body(&mut s, &mut v, b"").is_ok());
    assert_eq!(
        c.check_body(&mut s, &mut v, b"{}").unwrap_err().code(),
        "content_type_not_json"
    );
}

#[test]
fn answers_parse_into_responses() {
    let c = checker(Options {
        rate: 1,
        burst: Some(1),
        docs_url: Some("https://d.example/e".into()),
        ..Options::default()
    });
    let (parts, ()) = http::Request::get("/")
        .header("host", "a")
        .header("accept", "*/*")
        .body(())
        .unwrap()
        .into_parts();
    let (mut s, peer, now) = (c.scratch(), "192.0.2.1".parse().unwrap(), Instant::now());
    c.check_parts(&mut s, &parts, peer, now).unwrap();
    let r = c.check_parts(&mut s, &parts, peer, now).unwrap_err();
    let resp = c.response(&r);
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["ratelimit-policy"], "\"default\";q=1;w=1");
    assert_eq!(h["ratelimit"], "\"default\";r=0;t=1");
    assert_eq!(h["content-length"], resp.body().len().to_string().as_str());
    let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(v["type"], "https://d.example/e#rate_limited");
    // A HEAD request's answer has no body.
    let head = http::Request::head("/")
        .header("host", "a")
        .header("accept", "*/*")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let r = c.check_parts(&mut s, &head, peer, now).unwrap_err();
    let bytes = c.answer(&r);
    assert!(bytes.ends_with(b"\r\n\r\n"), "{}", String::from_utf8_lossy(&bytes));
}
