//! TLS and mutual TLS on the gRPC listener, with certificates made for the test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use e2e::*;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use server::pb::VerifyTokenRequest;
use server::pb::identity_service_client::IdentityServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A test CA, a server certificate for `localhost`, and a client certificate.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client: (String, String),
    stranger: (String, String),
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, issuer) = ca();
        let (server_cert, server_key) =
            leaf(&issuer, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::write(dir.path().join("server.pem"), server_cert).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        let client = leaf(
            &issuer,
            "orders-service",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (_, other_issuer) = ca();
        let stranger = leaf(
            &other_issuer,
            "stranger",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Self {
            dir,
            ca_pem,
            client,
            stranger,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self, backend: Backend, mutual: bool) -> Options {
        Options {
            tls: Some((
                self.file("server.pem"),
                self.file("server.key"),
                mutual.then(|| self.file("ca.pem")),
            )),
            ..Options::on(backend)
        }
    }
}

async fn channel(
    app: &TestApp,
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{}", app.grpc_addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

async fn a_call_works(channel: Channel) -> Result<(), tonic::Status> {
    let mut client = IdentityServiceClient::with_interceptor(
        channel,
        Bearer::new(&format!("Bearer {CORE_KEY}")),
    );
    client
        .verify_token(VerifyTokenRequest {
            access_token: "not-a-token".into(),
        })
        .await
        .map(|response| assert!(!response.into_inner().active))
}

async fn grpc_over_tls_serves_clients_that_trust_the_certificate(backend: Backend) {
    let pki = Pki::new();
    let Some(app) = spawn_with(pki.options(backend, false)).await else {
        return;
    };
    let trusted = channel(&app, &pki.ca_pem, None).await.unwrap();
    a_call_works(trusted).await.unwrap();
    assert!(
        a_call_works(app.channel()).await.is_err(),
        "plaintext is refused on a TLS listener"
    );
    let (other_ca, _) = ca();
    let untrusting = channel(&app, &other_ca, None).await;
    assert!(
        untrusting.is_err(),
        "a client that does not trust the certificate cannot connect"
    );
    app.stop().await;
}

async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_configured_ca(
    backend: Backend,
) {
    let pki = Pki::new();
    let Some(app) = spawn_with(pki.options(backend, true)).await else {
        return;
    };
    let with_cert = channel(&app, &pki.ca_pem, Some(&pki.client)).await.unwrap();
    a_call_works(with_cert).await.unwrap();
    for (what, identity) in [
        ("no certificate", None),
        ("a foreign CA's certificate", Some(&pki.stranger)),
    ] {
        let refused = match channel(&app, &pki.ca_pem, identity).await {
            Err(_) => true,
            Ok(channel) => a_call_works(channel).await.is_err(),
        };
        assert!(refused, "{what} is refused");
    }
    app.stop().await;
}

// TLS is the listener's business, not the database's: SQLite is enough.
#[tokio::test]
async fn tls_on_sqlite() {
    grpc_over_tls_serves_clients_that_trust_the_certificate(Backend::Sqlite).await;
}

#[tokio::test]
async fn mutual_tls_on_sqlite() {
    mutual_tls_admits_only_clients_with_a_certificate_from_the_configured_ca(Backend::Sqlite).await;
}
