//! The token that guards the API: `Authorization: Bearer <token>`, compared in
//! constant time, never logged or echoed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Checks tokens against the configured one. Both sides are put through an
/// HMAC under a key made at start, and the tags compared with `verify_slice`
/// (constant time): how long a check takes says nothing of the token, not
/// even its length.
pub struct Auth {
    key: [u8; 32],
    tag: Vec<u8>,
}

impl Auth {
    pub fn new(token: &Secret) -> Auth {
        let key: [u8; 32] = rand::random();
        let tag = mac(&key, token.expose().as_bytes())
            .finalize()
            .into_bytes()
            .to_vec();
        Auth { key, tag }
    }

    /// Whether `given` is the token.
    pub fn accepts(&self, given: &str) -> bool {
        mac(&self.key, given.as_bytes())
            .verify_slice(&self.tag)
            .is_ok()
    }

    /// Whether two texts are equal, in constant time (e.g. CSRF tokens).
    pub fn same(&self, a: &str, b: &str) -> bool {
        let tag = mac(&self.key, b.as_bytes()).finalize().into_bytes();
        mac(&self.key, a.as_bytes()).verify_slice(&tag).is_ok()
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn accepts_header(&self, header: Option<&str>) -> bool {
        // The scheme is case-insensitive (RFC 7235 §2.1): `bearer` is `Bearer`.
        header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .is_some_and(|(_, token)| self.accepts(token.trim()))
    }
}

fn mac(key: &[u8], text: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(text);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_is_accepted() {
        let auth = Auth::new(&Secret::new("a-long-enough-token-0123"));
        assert!(auth.accepts("a-long-enough-token-0123"));
        assert!(!auth.accepts("a-long-enough-token-0124"));
        assert!(!auth.accepts(""));
        assert!(auth.accepts_header(Some("Bearer a-long-enough-token-0123")));
        assert!(!auth.accepts_header(Some("a-long-enough-token-0123")));
        assert!(!auth.accepts_header(Some("Basic a-long-enough-token-0123")));
        assert!(auth.accepts_header(Some("bearer a-long-enough-token-0123")));
        assert!(!auth.accepts_header(Some("Bearerx a-long-enough-token-0123")));
        assert!(!auth.accepts_header(None));
    }
}
