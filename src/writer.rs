//! Response bytes helpers: the per-thread cached `Date` header.
//!
//! Formatting an IMF-fixdate costs more than the rest of a hello-world response head, and the
//! value changes once a second, so each worker thread caches it.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

struct DateCache {
    second: u64,
    text: [u8; 29],
}

thread_local! {
    static DATE: RefCell<DateCache> = const { RefCell::new(DateCache { second: u64::MAX, text: [0; 29] }) };
}

/// Call `f` with the current `Date` value (29 bytes, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        // The coarse clock (the last jiffy, a plain load from the vDSO page): the header has
        // a resolution of one second, and a precise clock read per response showed in the
        // hello profile (issue #12).
        let second = crate::sys::coarse_epoch_secs();
        if second != d.second {
            let s = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
            let n = s.len().min(29);
            d.text[..n].copy_from_slice(&s.as_bytes()[..n]);
            d.second = second;
        }
        f(&d.text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn date_is_an_imf_fixdate_of_now() {
        let s = with_date(|d| String::from_utf8(d.to_vec()).unwrap());
        let parsed = httpdate::parse_http_date(&s).expect("valid IMF-fixdate");
        let diff = SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default()
            .as_secs();
        assert!(diff <= 1, "cached date {s} is {diff}s old");
        assert!(s.ends_with(" GMT"));
    }
}
