//! HS256 JWTs accepted by the demo `jwt_authn` provider in gateway.yaml.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The demo provider's shared secret (the `k` of its inline JWKS, decoded).
/// For local use only; production replaces the provider with remote_jwks.
pub const DEMO_KEY: &[u8] = b"aigw-demo-hs256-key-for-local-use-only";
/// The provider's issuer and audience.
pub const DEMO_ISSUER: &str = "aigw-demo";
pub const DEMO_AUDIENCE: &str = "aigw";

/// Signs `claims` with HS256 under `key` (kid `aigw-demo`).
pub fn sign(claims: &Value, key: &[u8]) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "aigw-demo"});
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(), // HMAC accepts keys of any length
    };
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A token for the demo provider: `claims` plus `iss` and `aud` (and an `exp`
/// an hour ahead unless given), e.g. `demo_token(json!({"sub": "u1", "team": "alpha"}))`.
pub fn demo_token(claims: Value) -> String {
    let mut claims = match claims {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    claims.entry("iss").or_insert_with(|| json!(DEMO_ISSUER));
    claims.entry("aud").or_insert_with(|| json!(DEMO_AUDIENCE));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    claims.entry("exp").or_insert_with(|| json!(now + 3600));
    sign(&Value::Object(claims), DEMO_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_key_is_the_one_in_gateway_yaml() {
        let yaml = std::fs::read_to_string(crate::repo_root().join("envoy-config/gateway.yaml")).unwrap();
        assert!(yaml.contains(&format!("\"k\":\"{}\"", URL_SAFE_NO_PAD.encode(DEMO_KEY))));
    }

    #[test]
    fn signs_a_known_vector() {
        // RFC 7515 style check: the signature verifies with the same key.
        let token = sign(&json!({"sub": "x"}), b"k");
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(input.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        assert_eq!(input.split('.').count(), 2);
    }
}
