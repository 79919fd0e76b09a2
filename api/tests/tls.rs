//! HTTPS end to end: a certificate generated here (rcgen) for `localhost`, the server started
//! with `--tls-cert` and `--tls-key`, a rustls client that trusts only that certificate
//! signs in and queries over TLS; plain HTTP on the same port gets no answer; a key that
//! does not match the certificate stops the server before it listens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use oacis_tests::Server;
use serde_json::{json, Value};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};

const PASSWORD: &str = "Sesame-Open-2026";

/// One HTTPS POST of a GraphQL body; answers the status and the body.
fn https_post(addr: &str, config: &Arc<ClientConfig>, body: &str) -> (u16, String) {
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // A peer that closes without close_notify is an error for rustls; the bytes read count.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

#[test]
fn graphql_over_tls_with_a_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = Server::start(
        env!("CARGO_BIN_EXE_oacis"),
        &dir.path().join("data"),
        &["--tls-cert", cert_arg, "--tls-key", key_arg],
        &[("OACIS_ADMIN_PASSWORD", PASSWORD)],
    );
    assert!(server.stderr.lock().unwrap().iter().any(|l| l.starts_with("oacis: serving https://")));

    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let sign_in = json!({ "query": format!("mutation {{ signIn(input: {{name: \"admin\", password: \"{PASSWORD}\"}}) {{ token mustChangePassword }} }}") });
    let (status, body) = https_post(&server.addr, &config, &sign_in.to_string());
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(answer["data"]["signIn"]["token"].as_str().is_some_and(|t| t.starts_with("oacis_")), "{answer}");

    // Plain HTTP to the TLS port is not answered as HTTP.
    let (status, _) = oacis_tests::http(&server.addr, "POST", "/graphql", None, sign_in.to_string().as_bytes());
    assert_eq!(status, 0);
    // The server still serves TLS after that.
    let (status, _) = https_post(&server.addr, &config, &sign_in.to_string());
    assert_eq!(status, 200);
    server.kill();

    // A key of another certificate: refused at start, naming the flags.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oacis"))
        .args(["serve", "--data", dir.path().join("data").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--tls-cert", cert_arg, "--tls-key", key_arg])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(printed.contains("--tls-cert and --tls-key do not make a usable pair"), "{printed}");
}
