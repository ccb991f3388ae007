//! The chunked decoder, fed in pieces whose sizes come from the input itself: what it
//! consumes is never more than it was given, and its output is a part of its input.
#![no_main]
use distilld::http::body::{BodyDecoder, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let piece = usize::from(split % 64) + 1;
    let mut dec = BodyDecoder::new(Framing::Chunked);
    let mut at = 0;
    let mut fed = 0;
    while at < body.len() && !dec.is_done() {
        fed = (fed + piece).min(body.len()).max(at);
        let Ok((n, out)) = dec.decode(&body[at..fed]) else {
            return;
        };
        assert!(n <= fed - at);
        assert!(out.len() <= n);
        if n == 0 && fed == body.len() {
            break;
        }
        at += n;
    }
    let _ = dec.on_eof();
});
