//! The fake API server's TLS: a test CA made at start, a serving certificate for `127.0.0.1`
//! (and `localhost`) signed by it, and the accept loop that serves HTTP/1.1 over OpenSSL.
//!
//! kube-apiserver serves only HTTPS and clients verify it against the cluster CA their
//! kubeconfig carries (`certificate-authority-data`), so the fake does the same: a client that
//! trusts another CA fails the handshake, and no request reaches the routes.

use std::pin::Pin;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use openssl::x509::X509;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};

use super::Shared;

/// A CA: its certificate and the key it signs with.
pub struct Ca {
    pub cert: X509,
    key: PKey<Private>,
}

impl Ca {
    /// A fresh self-signed CA (P-256: quick to make, every client takes it).
    pub fn generate(cn: &str) -> Ca {
        let key = ec_key();
        let mut b = crate::support::tls::builder(cn, None, &key);
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        Ca { cert: b.build(), key }
    }

    pub fn pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    /// A serving certificate for `127.0.0.1` and `localhost`, as kube-apiserver's own carries
    /// the addresses clients dial in its subject alternative names.
    fn server_cert(&self) -> (X509, PKey<Private>) {
        let key = ec_key();
        let mut b = crate::support::tls::builder("kube-apiserver", Some(&self.cert), &key);
        b.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build().unwrap()).unwrap();
        b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap();
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .dns("localhost")
            .build(&b.x509v3_context(Some(&self.cert), None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// An acceptor presenting a certificate from `ca`.
pub(super) fn acceptor(ca: &Ca) -> SslAcceptor {
    let (cert, key) = ca.server_cert();
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    b.set_private_key(&key).unwrap();
    b.set_certificate(&cert).unwrap();
    b.check_private_key().unwrap();
    b.build()
}

/// Accepts connections until the task is dropped: a TLS handshake, then HTTP/1.1 with
/// `router` (no ALPN is offered, so clients speak HTTP/1.1, as kube-rs does anyway).
/// A failed handshake (a client that does not trust the CA) is counted and never routed.
pub(super) async fn serve(listener: tokio::net::TcpListener, acceptor: SslAcceptor, router: axum::Router, shared: Arc<Shared>) {
    let acceptor = Arc::new(acceptor);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let ssl = Ssl::new(acceptor.context()).unwrap();
            let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
            if Pin::new(&mut stream).accept().await.is_err() {
                shared.state.lock().unwrap().failed_handshakes += 1;
                return;
            }
            let service = TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
