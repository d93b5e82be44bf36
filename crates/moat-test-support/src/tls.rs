//! A TLS front for a plain-HTTP fixture: `https://127.0.0.1:PORT` with a certificate for
//! `127.0.0.1` issued by a CA made for this front alone, relaying each connection's bytes to the
//! fixture. Tests hand the CA to the gate as its system trust store (`SSL_CERT_FILE`) and see
//! whether the gate trusts the upstream.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A running TLS front; stops when dropped.
pub struct TlsFront {
    url: String,
    ca_pem: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A certificate authority made for a test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate, PEM: what a trust store holds.
    pub pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        let pem = cert.pem();
        Self { cert, key, pem }
    }

    /// A server certificate for `127.0.0.1` signed by this CA: the chain (leaf first) and the
    /// leaf's key.
    fn issue_for_loopback(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let leaf = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        let chain = vec![leaf.der().clone(), self.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (chain, key)
    }
}

impl TlsFront {
    /// Serves TLS on `127.0.0.1:0` in front of `backend` (`http://127.0.0.1:PORT`), with a
    /// certificate from a new CA.
    pub fn start(backend: &str) -> Self {
        let ca = TestCa::new("moat test upstream CA");
        let (chain, key) = ca.issue_for_loopback();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let backend = backend
            .strip_prefix("http://")
            .expect("an http:// backend")
            .trim_end_matches('/')
            .to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let url = format!("https://{}", listener.local_addr().expect("local_addr"));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("fixture-tls-front".to_owned())
            .spawn(move || relay(listener, acceptor, backend, stopped))
            .expect("spawn TLS front");
        Self {
            url,
            ca_pem: ca.pem,
            _shutdown: shutdown,
        }
    }

    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that issued the front's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// Accepts until `stopped`: each connection's TLS is terminated and its bytes copied both ways
/// to `backend` (`127.0.0.1:PORT`). A failed handshake (an untrusting client) just ends it.
fn relay(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    backend: String,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("TLS front runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        };
        tokio::select! {
            () = accept => {}
            _ = stopped => {}
        }
    });
    runtime.shutdown_background();
}
