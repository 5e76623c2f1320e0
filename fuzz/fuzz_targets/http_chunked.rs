//! Fuzz `ChunkedDecoder`: decoding the input whole and decoding it in pieces (sizes taken
//! from the first input bytes) must agree exactly: same data, same bytes consumed, same end
//! or error. This is what lets the connection feed the decoder whatever each read returned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringsgi::proto::ParseError;
use ringsgi::proto::http::ChunkedDecoder;

/// (body data, bytes consumed, done) or the error.
type Outcome = Result<(Vec<u8>, usize, bool), (ParseError, Vec<u8>)>;

fn decode(input: &[u8], max_body: Option<u64>, pieces: &[u8]) -> Outcome {
    let mut dec = ChunkedDecoder::new(max_body);
    let mut data = Vec::new();
    let mut pending = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    let mut sizes = pieces.iter().map(|&p| usize::from(p).max(1)).cycle();
    loop {
        loop {
            let d = match dec.decode(&pending) {
                Ok(d) => d,
                Err(e) => return Err((e, data)),
            };
            assert!(d.consumed <= pending.len());
            assert_eq!(d.done, dec.is_done());
            if let Some(r) = d.data.clone() {
                assert!(!r.is_empty() && r.end <= d.consumed);
                data.extend_from_slice(&pending[r]);
            }
            pending.drain(..d.consumed);
            consumed += d.consumed;
            if d.done {
                // Nothing past the end of the body is ever consumed.
                let again = dec.decode(&pending).map(|d| (d.consumed, d.data, d.done));
                assert_eq!(again, Ok((0, None, true)));
                return Ok((data, consumed, true));
            }
            if d.data.is_none() {
                // Framing bytes are always consumed whole.
                assert!(pending.is_empty());
                break;
            }
        }
        if fed == input.len() {
            return Ok((data, consumed, false));
        }
        let n = sizes.next().unwrap_or(input.len()).min(input.len() - fed);
        pending.extend_from_slice(&input[fed..fed + n]);
        fed += n;
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&k, rest)) = input.split_first() else {
        return;
    };
    let (pieces, body) = rest.split_at(usize::from(k & 0x07).min(rest.len()));
    let max_body = if k & 0x80 != 0 {
        None
    } else {
        Some(u64::from(k) * 4)
    };
    let whole = decode(body, max_body, &[]);
    let split = decode(
        body,
        max_body,
        if pieces.is_empty() { &[1] } else { pieces },
    );
    assert_eq!(whole, split);
    if let Some(max) = max_body
        && let Ok((data, _, _)) = &whole
    {
        assert!(data.len() as u64 <= max);
    }
});
