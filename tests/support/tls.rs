//! A test CA and a server certificate for `127.0.0.1` signed by it, as PEM files, for serving the
//! real registry over TLS (`http.tls` in its config).

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

pub struct TestCa {
    /// The CA certificate clients must trust.
    pub ca_pem: PathBuf,
    /// The server's certificate and key.
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// A certificate builder for `cn` and `key`, valid from an hour ago for 30 days, issued by
/// `issuer` (self-issued when `None`); extensions and signature are the caller's.
pub fn builder(cn: &str, issuer: Option<&X509>, key: &PKey<Private>) -> openssl::x509::X509Builder {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(63, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |i| i.subject_name())).unwrap();
    b.set_pubkey(key).unwrap();
    let now = chrono::Utc::now().timestamp();
    b.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    b
}

impl TestCa {
    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
    pub fn new(dir: &Path) -> TestCa {
        let ca_key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut ca = builder("argocd-image-pr test CA", None, &ca_key);
        ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
        ca.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
        ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let ca = ca.build();

        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut leaf = builder("127.0.0.1", Some(&ca), &key);
        leaf.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
        leaf.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build().unwrap()).unwrap();
        leaf.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap();
        let san = SubjectAlternativeName::new().ip("127.0.0.1").dns("localhost").build(&leaf.x509v3_context(Some(&ca), None)).unwrap();
        leaf.append_extension(san).unwrap();
        leaf.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let leaf = leaf.build();

        let out = TestCa { ca_pem: dir.join("ca.pem"), cert_pem: dir.join("server.pem"), key_pem: dir.join("server.key") };
        std::fs::write(&out.ca_pem, ca.to_pem().unwrap()).unwrap();
        std::fs::write(&out.cert_pem, leaf.to_pem().unwrap()).unwrap();
        std::fs::write(&out.key_pem, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        out
    }
}
