//! The GitHub App's JWT: the only code that holds or uses the App's RSA private key.
//!
//! Signed by octocrab's `jwt-rust-crypto` path (jsonwebtoken on the RustCrypto `rsa` 0.9 crate,
//! RUSTSEC-2023-0071: private-key operations whose timing depends on the key). The key only
//! ever signs the bot's own short claims (`iss`, `iat`, `exp`), locally, and never decrypts
//! anything; why that advisory does not reach the bot, and what would change that, is in
//! docs/security.md. Anything that replaces the signer (another crate, another backend)
//! replaces this file and nothing else.

use std::fmt;

/// A GitHub App's private key, parsed once when the driver is built.
pub(super) struct AppKey(octocrab::EncodingKey);

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppKey(<redacted>)")
    }
}

impl AppKey {
    /// The key from its PEM text (PKCS#1 or PKCS#8); the error says why it is not usable.
    pub(super) fn from_pem(pem: &str) -> Result<AppKey, String> {
        octocrab::EncodingKey::from_rsa_pem(pem.as_bytes()).map(AppKey).map_err(|e| e.to_string())
    }

    /// A JWT (RS256) that authenticates as App `app_id` for the next minutes: issued 60 s in the
    /// past and valid for 9 minutes, as GitHub allows at most 10 (octocrab's claims).
    pub(super) fn sign(&self, app_id: u64) -> Result<String, String> {
        octocrab::auth::create_jwt(octocrab::models::AppId(app_id), &self.0).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn signs_rs256_claims_for_the_app_and_refuses_what_is_not_an_rsa_key() {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
        let key = AppKey::from_pem(&pem).unwrap();
        assert_eq!(format!("{key:?}"), "AppKey(<redacted>)");
        let jwt = key.sign(42).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let json = |part: &str| -> serde_json::Value {
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        assert_eq!(json(parts[0])["alg"], "RS256");
        let claims = json(parts[1]);
        assert_eq!(claims["iss"], 42);
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 600);
        // The signature verifies with the public half.
        let public = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::public_key_from_pem(&rsa.public_key_to_pem().unwrap()).unwrap()).unwrap();
        let mut verifier = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public).unwrap();
        verifier.update(format!("{}.{}", parts[0], parts[1]).as_bytes()).unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert!(verifier.verify(&signature).unwrap());

        assert!(AppKey::from_pem("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n").is_err());
    }
}
