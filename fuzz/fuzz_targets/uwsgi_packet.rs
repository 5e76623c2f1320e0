//! Fuzz the uwsgi packet parser and the vars -> HTTP head conversion: they must never panic,
//! a complete packet is exactly `4 + datasize` bytes, and a converted head is one that the
//! HTTP parser indexes whole (no injected line can split it).
//!
//! The first input byte picks the limits, so small inputs reach the 431 paths too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsgi::proto::Parsed;
use ringsgi::proto::http::{self, HeadIndex};
use ringsgi::proto::uwsgi::{self, Limits, parse_packet, to_http_head};

fuzz_target!(|input: &[u8]| {
    let Some((&knob, data)) = input.split_first() else {
        return;
    };
    let limits = Limits {
        buffer_size: if knob & 0x80 != 0 {
            65535
        } else {
            usize::from(knob) * 4
        },
        max_vars: usize::from(knob & 0x3f).max(1),
    };
    match parse_packet(data, &limits) {
        Ok(Parsed::Complete(p)) => {
            let size = usize::from(u16::from_le_bytes([data[1], data[2]]));
            assert_eq!(p.len(), uwsgi::HEADER_LEN + size);
            assert!(p.len() <= data.len() && size <= limits.buffer_size);
            assert!(p.vars <= limits.max_vars);
            assert_eq!(uwsgi::vars(p.block(data)).count(), p.vars);
            // The packet alone parses the same: nothing after it was looked at.
            assert_eq!(
                parse_packet(&data[..p.len()], &limits),
                Ok(Parsed::Complete(p))
            );
            let mut head = Vec::new();
            if let Ok(meta) = to_http_head(p.block(data), &mut head) {
                let end = meta.server_name.start as usize;
                assert!(meta.server_name.range().end == head.len());
                let mut idx = HeadIndex::default();
                let hl = http::Limits {
                    max_head: head.len().max(1),
                    max_body: None,
                    max_headers: http::MAX_HEADERS,
                };
                if let Ok(Parsed::Complete(n)) = http::parse_head(&head, &hl, &mut idx) {
                    assert_eq!(n, end, "the head ends where the conversion says");
                }
            }
        }
        Ok(Parsed::Partial) => assert!(
            data.len() < 4
                || data.len() < 4 + usize::from(u16::from_le_bytes([data[1], data[2]]))
        ),
        Err(e) => assert!(matches!(e.status(), 400 | 431 | 501), "{e:?}"),
    }
});
