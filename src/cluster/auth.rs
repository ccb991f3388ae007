//! The cluster's shared secret at work: an HMAC-SHA256 tag (its first 16 bytes) over a
//! gossip datagram, or over the parts of a forwarded request that the hop vouches for.

use hmac::{Hmac, Mac};

pub const TAG: usize = 16;

/// The tag of `parts` (each length-prefixed, so they cannot be shifted into each other).
pub fn tag(key: &[u8], parts: &[&[u8]]) -> [u8; TAG] {
    let mut out = [0u8; TAG];
    if let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) {
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        out.copy_from_slice(&mac.finalize().into_bytes()[..TAG]);
    }
    out
}

/// `tag` compares equal to the tag of `parts`, in constant time.
pub fn verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(&(p.len() as u64).to_le_bytes());
        mac.update(p);
    }
    mac.verify_truncated_left(tag).is_ok()
}
