//! Fuzz `parse_head`: it must never panic, and what it reports must be consistent.
//!
//! The first input byte picks the limits, so small heads reach the 414/431 paths too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsgi::proto::Parsed;
use ringsgi::proto::http::{BodyFraming, ChunkedDecoder, HeadIndex, Limits, parse_head};

fuzz_target!(|input: &[u8]| {
    let Some((&knob, data)) = input.split_first() else {
        return;
    };
    let limits = Limits {
        max_head: if knob & 0x80 != 0 {
            8192
        } else {
            usize::from(knob) * 8
        },
        max_body: if knob & 0x40 != 0 {
            None
        } else {
            Some(u64::from(knob) * 16)
        },
        max_headers: usize::from(knob & 0x3f),
    };
    let mut idx = HeadIndex::default();
    match parse_head(data, &limits, &mut idx) {
        Ok(Parsed::Complete(n)) => {
            assert_eq!(n, idx.head_len);
            assert!(n <= data.len() && n <= limits.max_head);
            for span in [idx.method, idx.target, idx.path] {
                assert!(span.range().end <= n);
            }
            if let Some(q) = idx.query {
                assert!(q.range().end <= n);
            }
            assert!(idx.headers.len() <= limits.max_headers);
            for (name, value) in &idx.headers {
                assert!(name.range().end <= n && value.range().end <= n);
                let v = value.of(data);
                assert!(!v.starts_with(b" ") && !v.ends_with(b" "));
            }
            // The head alone parses the same: nothing after it was looked at.
            let mut again = HeadIndex::default();
            assert_eq!(
                parse_head(&data[..n], &limits, &mut again),
                Ok(Parsed::Complete(n))
            );
            assert_eq!(again.headers, idx.headers);
            assert_eq!(again.framing, idx.framing);
            // Whatever follows a chunked head must not panic the decoder either.
            if idx.framing == BodyFraming::Chunked {
                let mut dec = ChunkedDecoder::new(limits.max_body);
                let mut rest = &data[n..];
                while let Ok(d) = dec.decode(rest) {
                    assert!(d.consumed <= rest.len());
                    rest = &rest[d.consumed..];
                    if d.done || (d.consumed == 0 && d.data.is_none()) || rest.is_empty() {
                        break;
                    }
                }
            }
        }
        Ok(Parsed::Partial) => assert!(data.len() < limits.max_head),
        Err(e) => {
            let status = e.status();
            assert!((400..=505).contains(&status), "{e:?}");
        }
    }
});
