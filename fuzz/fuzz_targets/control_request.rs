//! `surfaces::control::parse_request`: a line from a client of the control socket.
//!
//! Beyond "no panic": a request that parses serialises and parses back to itself (the CLI
//! sends what the daemon reads); a refusal is one line (it is the answer's `error`), and
//! nothing longer than the bound is parsed.

#![no_main]

use enforcer::surfaces::control::{MAX_REQUEST, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(request) => {
            assert!(data.len() <= MAX_REQUEST);
            let line = serde_json::to_vec(&request).unwrap();
            let back = parse_request(&line).expect("a serialised request parses");
            assert_eq!(serde_json::to_vec(&back).unwrap(), line);
        }
        Err(e) => {
            assert!(!e.contains('\n') && !e.contains('\r'), "{e:?}");
            assert!(e.starts_with("bad request: "), "{e}");
        }
    }
});
