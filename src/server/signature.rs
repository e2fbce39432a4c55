//! The webhook secret, and the two ways a forge proves a delivery is its own: GitHub signs the
//! body (`X-Hub-Signature-256`), GitLab sends the secret itself as a token (`X-Gitlab-Token`).

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The webhook secret shared with the forge (GitHub signs with it, GitLab sends it as its
/// secret token). Never printed (`Debug` shows `<redacted>`, there is no
/// `Display`) and wiped from memory when dropped.
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// A secret from its bytes; an empty one is refused (anyone could sign with it).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<WebhookSecret, SecretError> {
        let secret = Zeroizing::new(secret.into());
        if secret.is_empty() {
            return Err(SecretError::Empty { origin: "the given value".to_string() });
        }
        Ok(WebhookSecret(secret))
    }

    /// Reads a secret file (a mounted Kubernetes Secret); one trailing newline (`\n` or `\r\n`),
    /// as `echo` and editors leave, is not part of the secret.
    pub fn from_file(path: &Path) -> Result<WebhookSecret, SecretError> {
        let mut bytes =
            Zeroizing::new(std::fs::read(path).map_err(|e| SecretError::Read { path: path.to_path_buf(), error: e })?);
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty { origin: path.display().to_string() });
        }
        Ok(WebhookSecret(bytes))
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the webhook secret file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("the webhook secret from {origin} is empty")]
    Empty { origin: String },
    #[error(
        "the webhook secret is given twice, by --webhook-secret-file and by ARGOCD_IMAGE_PR_WEBHOOK_SECRET: keep one"
    )]
    Ambiguous,
}

/// Why a delivery's signature was refused (for logs and metrics; the sender only sees 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SignatureError {
    /// No `X-Hub-Signature-256` (an unsigned delivery, or only the SHA-1 `X-Hub-Signature`).
    Missing,
    /// Not `sha256=` followed by 64 hex digits.
    Malformed,
    /// Signed with another secret, or the body was changed.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "no X-Hub-Signature-256 header",
            SignatureError::Malformed => "X-Hub-Signature-256 is not sha256=<64 hex digits>",
            SignatureError::Mismatch => "X-Hub-Signature-256 does not match the body and the configured secret",
        })
    }
}

/// Checks `header` (`sha256=<hex>`) against HMAC-SHA256 of `body`, in constant time.
pub(super) fn verify(secret: &WebhookSecret, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header.strip_prefix(b"sha256=").ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// Why a delivery's `X-Gitlab-Token` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenError {
    /// No `X-Gitlab-Token` (the webhook has no secret token set).
    Missing,
    /// Another token than the configured secret.
    Mismatch,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Missing => "no X-Gitlab-Token header",
            TokenError::Mismatch => "X-Gitlab-Token is not the configured secret",
        })
    }
}

/// Checks that `header` is the secret itself (GitLab's secret token), in constant time: both
/// are compared as HMAC-SHA256 digests under the secret, so the comparison takes the same time
/// whatever the token, its length included.
pub(super) fn verify_token(secret: &WebhookSecret, header: Option<&[u8]>) -> Result<(), TokenError> {
    let header = header.ok_or(TokenError::Missing)?;
    let keyed = || Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes a key of any length");
    let mut expected = keyed();
    expected.update(secret.expose());
    let expected = expected.finalize().into_bytes();
    let mut given = keyed();
    given.update(header);
    given.verify_slice(&expected).map_err(|_| TokenError::Mismatch)
}

/// `sha256=<hex>` for `body`, as GitHub sends it (for tests and tools that replay deliveries).
pub fn sign(secret: &WebhookSecret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    const GITHUB_EXAMPLE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_example() {
        let secret = WebhookSecret::new("It's a Secret to Everybody").unwrap();
        assert_eq!(sign(&secret, b"Hello, World!"), GITHUB_EXAMPLE);
        assert_eq!(verify(&secret, Some(GITHUB_EXAMPLE.as_bytes()), b"Hello, World!"), Ok(()));
    }

    #[test]
    fn refusals() {
        let secret = WebhookSecret::new("It's a Secret to Everybody").unwrap();
        let body = b"Hello, World!".as_slice();
        let upper = GITHUB_EXAMPLE.replace("sha256=", "SHA256=");
        let cases: &[(&str, Option<&str>, &[u8], SignatureError)] = &[
            ("missing", None, body, SignatureError::Missing),
            ("sha1 form", Some("sha1=01234567890abcdef01234567890abcdef012345"), body, SignatureError::Malformed),
            ("no prefix", Some(&GITHUB_EXAMPLE[7..]), body, SignatureError::Malformed),
            ("prefix case", Some(&upper), body, SignatureError::Malformed),
            ("not hex", Some("sha256=zz"), body, SignatureError::Malformed),
            ("short", Some(&GITHUB_EXAMPLE[..40]), body, SignatureError::Malformed),
            ("empty", Some(""), body, SignatureError::Malformed),
            ("body changed", Some(GITHUB_EXAMPLE), b"Hello, World?", SignatureError::Mismatch),
        ];
        for (name, header, body, want) in cases {
            assert_eq!(verify(&secret, header.map(str::as_bytes), body), Err(*want), "case {name}");
        }
        let other = WebhookSecret::new("another").unwrap();
        assert_eq!(verify(&other, Some(GITHUB_EXAMPLE.as_bytes()), body), Err(SignatureError::Mismatch));
    }

    #[test]
    fn gitlab_tokens_are_the_secret_itself() {
        let secret = WebhookSecret::new("It's a Secret to Everybody").unwrap();
        assert_eq!(verify_token(&secret, Some(b"It's a Secret to Everybody")), Ok(()));
        let cases: &[(&str, Option<&[u8]>, TokenError)] = &[
            ("missing", None, TokenError::Missing),
            ("empty", Some(b""), TokenError::Mismatch),
            ("other", Some(b"another"), TokenError::Mismatch),
            ("prefix", Some(b"It's a Secret"), TokenError::Mismatch),
            ("longer", Some(b"It's a Secret to Everybody "), TokenError::Mismatch),
            ("case", Some(b"it's a secret to everybody"), TokenError::Mismatch),
            ("a signature of it", Some(GITHUB_EXAMPLE.as_bytes()), TokenError::Mismatch),
        ];
        for (name, header, want) in cases {
            assert_eq!(verify_token(&secret, *header), Err(*want), "case {name}");
        }
    }

    #[test]
    fn secret_never_prints_and_file_loses_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let secret = WebhookSecret::from_file(&path).unwrap();
        assert_eq!(secret.expose(), b"s3cret");
        assert!(!format!("{secret:?}").contains("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(WebhookSecret::from_file(&path), Err(SecretError::Empty { .. })));
        assert!(matches!(WebhookSecret::new(""), Err(SecretError::Empty { .. })));
        assert!(matches!(WebhookSecret::from_file(&dir.path().join("nope")), Err(SecretError::Read { .. })));
    }
}
