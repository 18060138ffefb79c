//! Validates a JSON file with the ingress's validator, as it validates request bodies (RFC 8259, UTF-8, the
//! depth limit), and says how long one validation takes:
//!
//! ```sh
//! cargo run --release --example validate_json -- benches/corpora/json-bench/twitter.json 300
//! ```
//!
//! (the file, then how many times to validate it; 100 by default). For instructions counted instead of time
//! (repeatable on a busy machine), run the built example under callgrind, counting inside the validator only:
//! `valgrind --tool=callgrind --toggle-collect='*JsonValidator*validate*' target/release/examples/validate_json FILE N`.
//! `bash benches/json-instructions.sh` does that for the API bodies and the corpora. Without a file it
//! validates a small document of its own (so that `cargo test` runs it).

use std::time::Instant;

use portcullis::guard::json::JsonValidator;

fn main() {
    let mut args = std::env::args().skip(1);
    let doc = match args.next() {
        Some(path) => std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        None => br#"{"order": 42, "lines": [{"sku": "a-1", "qty": 2, "price": 9.5e0}], "gift": false}"#.to_vec(),
    };
    let n: u32 = args.next().map_or(100, |s| s.parse().expect("a count"));
    let mut validator = JsonValidator::new(1024);
    if let Err(e) = validator.validate(&doc) {
        println!("{} bytes: refused: {e:?}", doc.len());
        std::process::exit(1);
    }
    let start = Instant::now();
    for _ in 0..n {
        validator
            .validate(std::hint::black_box(&doc))
            .expect("valid once, valid again");
    }
    let per = start.elapsed().as_secs_f64() / f64::from(n.max(1));
    println!(
        "{} bytes: valid; {:.3} us per validation, {:.2} GiB/s",
        doc.len(),
        per * 1e6,
        doc.len() as f64 / per / f64::from(1u32 << 30)
    );
}
