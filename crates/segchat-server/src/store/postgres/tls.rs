//! TLS to PostgreSQL, asked for in the database URL the way libpq is:
//! `?sslmode=require` (or `verify-ca`, `verify-full`) and optionally
//! `&sslrootcert=/path/ca.pem`.
//!
//! Unlike libpq's `require`, every TLS mode here verifies the server's
//! certificate and its host name — against `sslrootcert` when given,
//! else the system's roots: encryption to an unverified party protects
//! against nobody who can already read the wire. `disable`, `allow`,
//! `prefer` and no `sslmode` at all connect without TLS (a local or
//! private-network database, as before).
//!
//! The two parameters are taken out of the URL here; the rest goes to
//! `tokio_postgres::Config` as it was.

use std::path::Path;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// What the URL asked for.
pub(super) struct Choice {
    /// The URL without `sslmode` and `sslrootcert`.
    pub(super) url: String,
    /// `Some` when TLS is required.
    pub(super) tls: Option<ClientConfig>,
}

/// Reads `sslmode` and `sslrootcert` off `url`.
pub(super) fn choose(url: &str) -> Result<Choice, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("{key} in the database URL is not UTF-8"))?
            .into_owned();
        match key {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(pair),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    let tls = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => {
            if root.is_some() {
                return Err("sslrootcert is given but sslmode does not ask for TLS: \
                     add sslmode=require (or verify-full)"
                    .into());
            }
            None
        }
        Some("require" | "verify-ca" | "verify-full") => Some(client_config(root.as_deref())?),
        Some(other) => {
            return Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            ))
        }
    };
    Ok(Choice { url, tls })
}

/// A client configuration trusting `root` (a PEM file of CA
/// certificates), or the system's roots.
fn client_config(root: Option<&str>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match root {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(Path::new(path))
                .map_err(|e| format!("sslrootcert {path}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {path} holds no certificate"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("sslmode asks for TLS but this system has no trusted root \
                     certificates: install ca-certificates or give sslrootcert=PATH"
                    .into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_sslmode_the_url_is_left_as_it_was() {
        let c = choose("postgres://u@h/db?host=/run/postgresql").expect("ok");
        assert_eq!(c.url, "postgres://u@h/db?host=/run/postgresql");
        assert!(c.tls.is_none());
        let c = choose("postgres://u@h/db?sslmode=prefer").expect("ok");
        assert_eq!(c.url, "postgres://u@h/db");
        assert!(c.tls.is_none());
    }

    #[test]
    fn require_takes_both_parameters_out_and_reads_the_root() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = rcgen::generate_simple_self_signed(vec!["db.example".into()]).expect("ca");
        let path = dir.path().join("ca pem");
        std::fs::write(&path, ca.cert.pem()).expect("write");
        let encoded = path.display().to_string().replace(' ', "%20");
        let url = format!(
            "postgres://u@db.example/x?sslmode=require&application_name=a&sslrootcert={encoded}"
        );
        let c = choose(&url).expect("ok");
        assert_eq!(c.url, "postgres://u@db.example/x?application_name=a");
        assert!(c.tls.is_some());
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_the_reason() {
        let e = |url: &str| choose(url).err().expect("refused");
        assert!(e("postgres://u@h/x?sslmode=maybe").contains("not one of"));
        assert!(e("postgres://u@h/x?sslrootcert=/ca.pem").contains("sslmode"));
        assert!(
            e("postgres://u@h/x?sslmode=require&sslrootcert=/no/such.pem").contains("/no/such.pem")
        );
    }
}
