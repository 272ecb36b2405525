//! The Crypt4GH work of a request: reading the requester's public key from the request headers
//! and re-encrypting a stored header for it.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use c4gh::DataKey;
use c4gh::keys::{PublicKey, SecretKey};

use crate::catalog::Object;
use crate::problem::Problem;

/// This project's header for the requester's public key.
pub const PUBLIC_KEY_HEADER: &str = "x-c4gh-public-key";
/// htsget-rs' and SDA v2's alternative name.
pub const HTSGET_PUBLIC_KEY_HEADER: &str = "htsget-context-public-key";

/// Longest accepted public key header value (a base64 PEM public key is ~120 characters).
const MAX_KEY_HEADER_LEN: usize = 1024;

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The requester's public key: from exactly one of `X-C4GH-Public-Key` and
/// `Htsget-Context-Public-Key`, as base64 of a Crypt4GH PEM public key or of the raw 32 bytes.
pub fn requester_key(headers: &HeaderMap) -> Result<PublicKey, Problem> {
    let ours = headers.get(PUBLIC_KEY_HEADER);
    let htsget = headers.get(HTSGET_PUBLIC_KEY_HEADER);
    let value = match (ours, htsget) {
        (Some(_), Some(_)) => return Err(Problem::key_conflict()),
        (None, None) => return Err(Problem::key_missing()),
        (Some(v), None) | (None, Some(v)) => v,
    };
    if value.len() > MAX_KEY_HEADER_LEN {
        return Err(Problem::key_invalid(format!(
            "the public key header is {} bytes long; a base64 Crypt4GH public key is about 120",
            value.len()
        )));
    }
    let text = value.to_str().map_err(|_| {
        Problem::key_invalid("the public key header is not ASCII; send base64 of the PEM key")
    })?;
    let decoded = BASE64
        .decode(text.trim())
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(text.trim()))
        .map_err(|_| {
            Problem::key_invalid(
                "the public key header is not base64; send base64 of the Crypt4GH PEM public \
                 key file (e.g. `base64 -w0 key.pub`)",
            )
        })?;
    let key = if let Ok(raw) = <[u8; 32]>::try_from(decoded.as_slice()) {
        PublicKey::from_bytes(raw)
    } else {
        let pem = std::str::from_utf8(&decoded).map_err(|_| {
            Problem::key_invalid(format!(
                "the public key decodes to {} bytes that are neither a 32-byte X25519 key nor a \
                 Crypt4GH PEM public key",
                decoded.len()
            ))
        })?;
        PublicKey::from_pem(pem).map_err(|e| {
            Problem::key_invalid(format!(
                "the public key decodes to text that is not a Crypt4GH public key: {e}"
            ))
        })?
    };
    if key.as_bytes().iter().all(|&b| b == 0) {
        return Err(Problem::key_invalid("the public key is all zeros"));
    }
    Ok(key)
}

/// The key's fingerprint for logs and the audit trail: the first 16 bytes of the SHA-256 of its
/// raw 32 bytes, as 32 lower-case hex digits (`base64 -d <<<"$KEY" | sha256sum | cut -c1-32` for
/// a key sent as raw bytes).
pub fn fingerprint(key: &PublicKey) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(key.as_bytes())[..16])
}

/// The header of `object` re-encrypted for `recipient`: the packets the server key opens (data
/// keys and edit list, opened once per object, see [`Object::opened_header`]) sealed with a
/// fresh writer key. Packets for other keys are not passed on.
pub fn reencrypt(
    object: &Object,
    server_key: &SecretKey,
    recipient: &PublicKey,
) -> Result<Vec<u8>, Problem> {
    let id = &object.record.id;
    let opened = object
        .opened_header(server_key)
        .map_err(|e| Problem::not_crypt4gh(id, e))?;
    let data_keys: Vec<&DataKey> = opened.data_keys.iter().collect();
    c4gh::header::build(
        &SecretKey::generate(),
        std::slice::from_ref(recipient),
        &data_keys,
        opened.edit_list.as_deref(),
    )
    .map_err(|e| Problem::not_crypt4gh(id, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn key_forms() {
        let key = SecretKey::generate().public_key();
        let pem_b64 = general_purpose::STANDARD.encode(key.to_pem());
        let raw_b64 = general_purpose::STANDARD.encode(key.as_bytes());
        assert_eq!(
            requester_key(&with(PUBLIC_KEY_HEADER, &pem_b64)).unwrap(),
            key
        );
        assert_eq!(
            requester_key(&with(HTSGET_PUBLIC_KEY_HEADER, &raw_b64)).unwrap(),
            key
        );
        let mut both = with(PUBLIC_KEY_HEADER, &pem_b64);
        both.insert(
            HTSGET_PUBLIC_KEY_HEADER,
            HeaderValue::from_str(&raw_b64).unwrap(),
        );
        assert_eq!(
            requester_key(&both).unwrap_err().code().as_str(),
            "KEY_CONFLICT"
        );
        assert_eq!(
            requester_key(&HeaderMap::new())
                .unwrap_err()
                .code()
                .as_str(),
            "KEY_MISSING"
        );
        for bad in [
            "not base64!",
            "aGVsbG8=",
            &general_purpose::STANDARD.encode([0u8; 32]),
            &general_purpose::STANDARD.encode("-----BEGIN CRYPT4GH PUBLIC KEY-----\nxx\n"),
        ] {
            let err = requester_key(&with(PUBLIC_KEY_HEADER, bad)).unwrap_err();
            assert_eq!(err.code().as_str(), "KEY_INVALID", "{bad}");
        }
    }
}
