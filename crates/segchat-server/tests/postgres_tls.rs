//! The server on PostgreSQL over TCP and TLS (`sslmode`, `sslrootcert` in
//! the database URL), against a private PostgreSQL that takes TCP
//! sessions over TLS only, with a certificate from a CA made here.

mod common;

use std::path::Path;

use common::{Client, TestServer};
use segchat_pgtest::{Options, Postgres, Tls};
use segchat_proto::types::Visibility;
use segchat_server::ServerConfig;
use tokio_util::sync::CancellationToken;

/// A CA (its certificate written to `ca_path`) and a certificate it
/// signed for 127.0.0.1.
fn certificates(ca_path: &Path) -> Tls {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "segchat test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().expect("key"))
        .expect("CA");
    std::fs::write(ca_path, ca.pem()).expect("write the CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    Tls {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Starts a server on `url` and answers why it did not start.
async fn refused(dir: &Path, url: String) -> String {
    let mut config = ServerConfig::new(dir);
    config.database_url = Some(url);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    segchat_server::run(listener, config, CancellationToken::new())
        .await
        .expect_err("refused")
        .to_string()
}

#[tokio::test]
async fn the_server_uses_postgresql_over_tls_verified_by_the_ca_it_is_given() {
    let dir = tempfile::tempdir().expect("dir");
    let ca_path = dir.path().join("ca.pem");
    let tls = certificates(&ca_path);
    let pg = tokio::task::spawn_blocking(move || {
        Postgres::start(Options {
            tls: Some(tls),
            ..Options::default()
        })
    })
    .await
    .expect("task")
    .expect("postgres with TLS");
    pg.create_database("chat").await.expect("database");
    let base = pg.tcp_url("chat").expect("a TCP URL");

    // Without TLS asked for, this PostgreSQL refuses the session.
    let plain = refused(&dir.path().join("plain"), base.clone()).await;
    assert!(plain.contains("database"), "{plain}");
    // TLS to a certificate the system does not trust: refused, saying so.
    let unknown = refused(
        &dir.path().join("unknown"),
        format!("{base}?sslmode=require"),
    )
    .await;
    assert!(unknown.contains("certificate"), "{unknown}");
    eprintln!("in clear: {plain}\nunknown CA: {unknown}");

    let url = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        ca_path.display()
    );
    let server = TestServer::start_with(&dir.path().join("tls"), move |c| {
        c.database_url = Some(url);
    })
    .await;
    let mut a = Client::connect(server.addr).await;
    a.register("tess").await;
    a.create("vault", Visibility::Private, false).await;
    assert_eq!(a.channel_names().await, vec!["vault"]);

    // PostgreSQL itself says the server's sessions are encrypted.
    let (client, conn) = tokio_postgres::connect(&pg.url("chat"), tokio_postgres::NoTls)
        .await
        .expect("connect over the socket");
    let task = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
               FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.datname = 'chat' AND a.client_addr IS NOT NULL",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let (encrypted, clear): (i64, i64) = (row.get(0), row.get(1));
    assert!(encrypted >= 1, "no TLS session from the server");
    assert_eq!(clear, 0, "a session in clear");
    drop(client);
    let _ = task.await;
    drop(a);
    server.stop().await;
}
