//! Who may use the proxy and where it may go: the client lists a request is checked
//! against before any upstream work (`clients`), the destination rules checked on the
//! address about to be connected to (`destinations`), numeric hosts in every spelling
//! (`numeric`), over address prefixes (`prefix`); per-client limits on connections and
//! requests per second (`limits`).

pub mod auth;
pub mod clients;
pub mod destinations;
pub mod limits;
pub mod numeric;
pub mod prefix;

/// `N` bytes from the kernel's random source: keys and seeds that nobody outside the
/// process can know.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: writes at most the rest of `out`, which is ours.
        let n = unsafe { libc::getrandom(out[got..].as_mut_ptr().cast(), N - got, 0) };
        if n <= 0 {
            // getrandom(2) blocks until the pool is ready and does not fail on a
            // running system; if it did, the clock still varies per process.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes();
            for (i, b) in out.iter_mut().enumerate() {
                *b ^= t[i % t.len()];
            }
            break;
        }
        got += n as usize;
    }
    out
}
