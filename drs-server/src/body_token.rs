//! Short-lived body tokens: how a caller that authenticated with passports in a POST body
//! downloads the body, whose endpoint is a plain `GET` (a Range download carries no body).
//!
//! When a passport holder asks for the `crypt4gh-body` access URL (`POST
//! /objects/{id}/access/crypt4gh-body`, or the bulk form) and its visas grant the object, the
//! access URL carries a header `Authorization: Bearer c4gh-body.v1.…` minted by this server: an
//! HMAC-SHA256 (a key made at start-up, in memory only) over the object ID, the holder and an
//! expiry ([`DEFAULT_TTL`], capped by the passports' own `exp`). The body endpoint accepts such a
//! token for that object only and until it expires. It never opens a header: a body is
//! ciphertext, useless without a header re-encrypted for the reader's key, which still needs the
//! passports themselves. A restarted server forgets its key, so its earlier tokens stop working
//! (the client asks for the access URL again).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// The prefix of every body token.
pub const PREFIX: &str = "c4gh-body.v1.";

/// Default lifetime of a body token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Why a body token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyTokenError {
    /// Not a token this server made (or made before a restart).
    #[error(
        "the body token was not issued by this server (or before it restarted); ask for the \
         crypt4gh-body access URL again"
    )]
    Invalid,
    /// The token has expired.
    #[error("the body token expired; ask for the crypt4gh-body access URL again")]
    Expired,
    /// The token is for another object.
    #[error("the body token is for object {token_object:?}, not {requested:?}")]
    OtherObject {
        /// The object the token names.
        token_object: String,
        /// The object requested.
        requested: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// Object ID.
    o: String,
    /// Holder (audit only).
    s: String,
    /// Expiry, seconds since the Unix epoch.
    e: u64,
}

/// What a verified body token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyGrant {
    /// The holder the token was minted for.
    pub holder: String,
    /// When it expires.
    pub expires_at: u64,
}

/// Mints and checks body tokens.
pub struct BodyTokens {
    key: hmac::Key,
    ttl: Duration,
}

impl std::fmt::Debug for BodyTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl BodyTokens {
    /// A fresh random key; tokens live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
        BodyTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes[..]),
            ttl,
        }
    }

    /// A token for `object` and `holder`, valid for the configured lifetime and at most until
    /// `not_after` (the passports' expiry).
    pub fn mint(&self, object: &str, holder: &str, not_after: Option<u64>) -> String {
        let mut expires = now_s().saturating_add(self.ttl.as_secs());
        if let Some(limit) = not_after {
            expires = expires.min(limit);
        }
        let claims = Claims {
            o: object.to_owned(),
            s: holder.to_owned(),
            e: expires,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{PREFIX}{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks `token` for `object`.
    pub fn verify(&self, token: &str, object: &str) -> Result<BodyGrant, BodyTokenError> {
        let rest = token.strip_prefix(PREFIX).ok_or(BodyTokenError::Invalid)?;
        let (payload, tag) = rest.split_once('.').ok_or(BodyTokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| BodyTokenError::Invalid)?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).map_err(|_| BodyTokenError::Invalid)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| BodyTokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| BodyTokenError::Invalid)?;
        if claims.e <= now_s() {
            return Err(BodyTokenError::Expired);
        }
        if claims.o != object {
            return Err(BodyTokenError::OtherObject {
                token_object: claims.o,
                requested: object.to_owned(),
            });
        }
        Ok(BodyGrant {
            holder: claims.s,
            expires_at: claims.e,
        })
    }
}

/// Whether `token` has the body-token form (checked before any other kind of token).
pub fn is_body_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_object_key_and_time() {
        let tokens = BodyTokens::new(DEFAULT_TTL);
        let token = tokens.mint("obj-1", "alice", None);
        assert!(is_body_token(&token));
        assert_eq!(tokens.verify(&token, "obj-1").unwrap().holder, "alice");
        assert!(matches!(
            tokens.verify(&token, "obj-2"),
            Err(BodyTokenError::OtherObject { .. })
        ));
        // Another server (or this one after a restart) does not accept it.
        let other = BodyTokens::new(DEFAULT_TTL);
        assert_eq!(other.verify(&token, "obj-1"), Err(BodyTokenError::Invalid));
        // A changed payload breaks the tag.
        let forged = token.replacen(PREFIX, &format!("{PREFIX}x"), 1);
        assert_eq!(
            tokens.verify(&forged, "obj-1"),
            Err(BodyTokenError::Invalid)
        );
        // Capped by the passports' expiry.
        let expired = tokens.mint("obj-1", "alice", Some(now_s() - 1));
        assert_eq!(
            tokens.verify(&expired, "obj-1"),
            Err(BodyTokenError::Expired)
        );
    }
}
