//! The API over mutual TLS, with certificates made for the test: a client
//! without a certificate is refused at the handshake, a read-only identity
//! reads but cannot write, an identity with no role is refused, and a
//! read-write one writes. And the server's bound on watch streams.

mod support;

use std::path::PathBuf;

use lb_controller::api::{Access, MAX_WATCHES, Roles};
use lb_proto::v1 as pb;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::{failed, runtime, with_controller, with_secured_controller};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// A CA, and certificates it signs, as PEM files in `dir`.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "lb test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let pki = Self {
            dir: tempfile::TempDir::new().unwrap(),
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A certificate for `common_name` and `names`: (cert, key) PEM, also
    /// written as `<file>.pem` and `<file>.key`.
    fn issue(&self, file: &str, common_name: &str, names: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert, key) = (cert.pem(), key.serialize_pem());
        std::fs::write(self.path(&format!("{file}.pem")), &cert).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), &key).unwrap();
        (cert, key)
    }

    /// lbctl's TLS flags for the client `file` (none: CA only).
    fn flags(&self, file: Option<&str>) -> Vec<String> {
        let mut flags = vec![
            "--tls-ca".to_owned(),
            self.path("ca.pem").display().to_string(),
            "--tls-server-name".to_owned(),
            "localhost".to_owned(),
        ];
        if let Some(file) = file {
            flags.extend([
                "--tls-cert".to_owned(),
                self.path(&format!("{file}.pem")).display().to_string(),
                "--tls-key".to_owned(),
                self.path(&format!("{file}.key")).display().to_string(),
            ]);
        }
        flags
    }
}

#[test]
fn mutual_tls_gives_each_identity_its_role() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", "lb-1", &["localhost"]);
    pki.issue("ops", "ops", &["spiffe://lb/ops"]);
    pki.issue("monitor", "monitor", &[]);
    pki.issue("stranger", "stranger", &[]);
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    let roles = Roles {
        read_only: ["CN=monitor".to_owned()].into(),
        read_write: ["spiffe://lb/ops".to_owned()].into(),
    };
    with_secured_controller(Some(tls), Access::Certificates(roles), |c| {
        let run = |client: Option<&str>, args: &[&str]| {
            let mut all: Vec<String> = pki.flags(client);
            all.extend(args.iter().map(|a| (*a).to_owned()));
            c.lbctl(&all.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let create = [
            "vip",
            "create",
            "--name",
            "web",
            "--address",
            "192.0.2.10",
            "--port",
            "80",
        ];
        let out = run(Some("ops"), &create);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let (code, err) = failed(&run(Some("monitor"), &["vip", "delete", "web"]));
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("read-only") && err.contains("READ_ONLY_ROLE"),
            "{err}"
        );
        let out = run(Some("monitor"), &["status"]);
        assert!(
            out.status.success(),
            "a monitor reads: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(Some("monitor"), &["vip", "get", "web"]);
        assert!(out.status.success());

        let (code, err) = failed(&run(Some("stranger"), &["status"]));
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("no role is given to CN=stranger"), "{err}");

        let (code, err) = failed(&run(None, &["status"]));
        assert_eq!(
            code, 4,
            "no client certificate: refused at the handshake: {err}"
        );
        let (code, err) = failed(&c.lbctl(&["status"]));
        assert_eq!(code, 4, "no TLS at all: {err}");

        let out = run(Some("ops"), &["vip", "delete", "web"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

#[test]
fn watch_streams_are_bounded() {
    with_controller(|c| {
        runtime().block_on(async {
            let (_, node) = c.clients().await;
            let mut open = Vec::new();
            for _ in 0..MAX_WATCHES {
                let mut client = node.clone();
                let mut stream = client
                    .watch_status(pb::WatchStatusRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                stream.message().await.unwrap().expect("a first status");
                open.push(stream);
            }
            let mut client = node.clone();
            let refused = client
                .watch_stats(pb::WatchStatsRequest::default())
                .await
                .unwrap_err();
            assert_eq!(
                refused.code(),
                tonic::Code::ResourceExhausted,
                "{refused:?}"
            );
            // One closed: room for another.
            drop(open.pop());
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let mut client = node.clone();
            client
                .watch_stats(pb::WatchStatsRequest::default())
                .await
                .unwrap();
        });
    });
}
