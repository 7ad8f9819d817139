//! AMQPS and SASL EXTERNAL with a real client: a CA, a server certificate and client
//! certificates are made here with rcgen; python's pika (over the `ssl` module) publishes
//! and consumes over TLS 1.2 and 1.3, logs in with EXTERNAL, and is refused where
//! RabbitMQ refuses. Needs `python3` with `pika` and `openssl` (both on the CI machine).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::config::{LoginFrom, TlsConfig, TlsVerify};

/// The files one test's certificates live in.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn write(dir: &Path, name: &str, pem: String) {
    std::fs::write(dir.join(name), pem).unwrap();
}

/// ca.pem; server.pem/.key (SAN localhost, 127.0.0.1); client certificates guest.pem,
/// nobody.pem (CN=nobody) and stranger.pem (CN=guest, signed by another CA), with keys.
fn make_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca_cert, ca_key) = ca("Warren test CA");
    let (other_cert, other_key) = ca("Some other CA");
    write(dir.path(), "ca.pem", ca_cert.pem());
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
    write(dir.path(), "server.pem", cert.pem());
    write(dir.path(), "server.key", key.serialize_pem());
    for (name, cn, issuer) in [
        ("guest", "guest", (&ca_cert, &ca_key)),
        ("nobody", "nobody", (&ca_cert, &ca_key)),
        ("stranger", "guest", (&other_cert, &other_key)),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "Warren tests");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, issuer.0, issuer.1).unwrap();
        write(dir.path(), &format!("{name}.pem"), cert.pem());
        write(dir.path(), &format!("{name}.key"), key.serialize_pem());
    }
    Pki { dir }
}

fn tls_config(pki: &Pki, verify: TlsVerify) -> TlsConfig {
    TlsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: pki.path("server.pem"),
        key: pki.path("server.key"),
        ca: Some(pki.path("ca.pem")),
        verify,
        login_from: LoginFrom::CommonName,
    }
}

async fn start(pki: &Pki, verify: TlsVerify) -> common::TestBroker {
    let tls = tls_config(pki, verify);
    common::start_with(move |c| c.tls = Some(tls)).await
}

/// Runs tests/python/tls_client.py; its one line of output.
async fn pika(port: u16, pki: &Pki, version: &str, extra: &[&str]) -> String {
    let mut args = vec![
        format!("{}/tests/python/tls_client.py", env!("CARGO_MANIFEST_DIR")),
        port.to_string(),
        pki.s("ca.pem"),
        version.to_string(),
    ];
    for a in extra {
        if let "guest" | "nobody" | "stranger" = *a {
            args.push("--cert".into());
            args.push(pki.s(&format!("{a}.pem")));
            args.push("--key".into());
            args.push(pki.s(&format!("{a}.key")));
        } else {
            args.push(a.to_string());
        }
    }
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(&args)
            .output()
            .expect("python3 with pika is needed for the TLS tests")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && (text.starts_with("OK") || text.starts_with("ERR")),
        "python failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The mechanisms a TLS connection.start offers, read with a rustls client (optionally
/// presenting the guest certificate).
async fn tls_mechanisms(pki: &Pki, port: u16, with_cert: bool) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let cert = CertificateDer::from_pem_file(pki.path("guest.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_file(pki.path("guest.key")).unwrap();
        builder.with_client_auth_cert(vec![cert], key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let mut s = connector.connect(name, tcp).await.unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    mechanisms_of_start(&mut s).await
}

/// Reads connection.start and returns its mechanisms field.
async fn mechanisms_of_start(s: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut head = [0u8; 7];
    s.read_exact(&mut head).await.unwrap();
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let mut p = vec![0u8; size + 1];
    s.read_exact(&mut p).await.unwrap();
    assert_eq!(&p[..4], &[0, 10, 0, 10], "connection.start");
    let props = u32::from_be_bytes([p[6], p[7], p[8], p[9]]) as usize;
    let at = 10 + props;
    let len = u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]) as usize;
    String::from_utf8_lossy(&p[at + 4..at + 4 + len]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_publishes_and_consumes_over_tls_1_2_and_1_3() {
    let pki = make_pki();
    let b = start(&pki, TlsVerify::None).await;
    let port = b.tls_addr.expect("TLS listener").port();
    // A client that never starts its TLS handshake holds up nobody else.
    let _silent = tokio::net::TcpStream::connect(b.tls_addr.unwrap())
        .await
        .unwrap();
    for version in ["1.2", "1.3"] {
        let out = pika(port, &pki, version, &[]).await;
        assert_eq!(out, format!("OK hello over TLS {version}"));
    }
    // No client certificate is asked for, so EXTERNAL has nothing to go on.
    let out = pika(port, &pki, "1.3", &["--external"]).await;
    assert!(out.contains("ACCESS_REFUSED"), "{out}");
    // The plain listener is unaffected and does not offer EXTERNAL.
    let mut raw = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    raw.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    assert_eq!(mechanisms_of_start(&mut raw).await, "PLAIN AMQPLAIN");
    let conn = common::lapin_connect(&b).await;
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_required_refuses_a_client_without_a_good_certificate() {
    let pki = make_pki();
    let b = start(&pki, TlsVerify::Required).await;
    let port = b.tls_addr.unwrap().port();
    for version in ["1.2", "1.3"] {
        let out = pika(port, &pki, version, &[]).await;
        assert!(
            out.starts_with("ERR"),
            "no certificate, TLS {version}: {out}"
        );
        let out = pika(port, &pki, version, &["stranger"]).await;
        assert!(out.starts_with("ERR"), "unknown CA, TLS {version}: {out}");
        let out = pika(port, &pki, version, &["guest"]).await;
        assert_eq!(out, format!("OK hello over TLS {version}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_peer_allows_a_client_without_a_certificate() {
    let pki = make_pki();
    let b = start(&pki, TlsVerify::Peer).await;
    let port = b.tls_addr.unwrap().port();
    for version in ["1.2", "1.3"] {
        let out = pika(port, &pki, version, &[]).await;
        assert_eq!(out, format!("OK hello over TLS {version}"));
        // A certificate that is given is still verified.
        let out = pika(port, &pki, version, &["stranger"]).await;
        assert!(out.starts_with("ERR"), "unknown CA, TLS {version}: {out}");
    }
    // EXTERNAL is offered on TLS (last, as RabbitMQ lists it), certificate or not.
    assert_eq!(
        tls_mechanisms(&pki, port, false).await,
        "PLAIN AMQPLAIN EXTERNAL"
    );
    assert_eq!(
        tls_mechanisms(&pki, port, true).await,
        "PLAIN AMQPLAIN EXTERNAL"
    );
    // ...and refused without a certificate.
    let out = pika(port, &pki, "1.3", &["--external"]).await;
    assert!(out.contains("ACCESS_REFUSED"), "{out}");
    assert!(out.contains("EXTERNAL"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_logs_in_as_the_certificate_common_name() {
    let pki = make_pki();
    let b = start(&pki, TlsVerify::Required).await;
    let port = b.tls_addr.unwrap().port();
    for version in ["1.2", "1.3"] {
        let out = pika(port, &pki, version, &["guest", "--external"]).await;
        assert_eq!(out, format!("OK hello over TLS {version}"));
        // CN=nobody is no user.
        let out = pika(port, &pki, version, &["nobody", "--external"]).await;
        assert!(out.contains("ACCESS_REFUSED"), "{out}");
        assert!(
            out.contains("Login was refused using authentication mechanism EXTERNAL"),
            "{out}"
        );
    }
    // PLAIN still works over a connection that has a certificate.
    let out = pika(port, &pki, "1.3", &["nobody"]).await;
    assert_eq!(out, "OK hello over TLS 1.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinguished_name_login_uses_rabbitmq_format() {
    let pki = make_pki();
    let mut tls = tls_config(&pki, TlsVerify::Required);
    tls.login_from = LoginFrom::DistinguishedName;
    let b = common::start_with(move |c| c.tls = Some(tls)).await;
    let port = b.tls_addr.unwrap().port();
    // The guest certificate's DN is "O=Warren tests,CN=guest": no such user.
    let out = pika(port, &pki, "1.3", &["guest", "--external"]).await;
    assert!(out.contains("ACCESS_REFUSED"), "{out}");
    // The name matches what `openssl x509 -nameopt RFC2253` prints (RabbitMQ's README
    // gives that command), escapes included.
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CountryName, "NL");
    p.distinguished_name
        .push(DnType::OrganizationName, "Acme, Inc.");
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "a+b");
    p.distinguished_name.push(DnType::CommonName, "guest");
    let cert = p.self_signed(&key).unwrap();
    let dn = warren::tls::login_name(cert.der(), LoginFrom::DistinguishedName).unwrap();
    for part in ["CN=guest", "OU=a\\+b", "O=Acme\\, Inc.", "C=NL"] {
        assert!(dn.contains(part), "{dn} lacks {part}");
    }
    let cn = warren::tls::login_name(cert.der(), LoginFrom::CommonName).unwrap();
    assert_eq!(cn, "guest");
    std::fs::write(pki.path("dn.pem"), cert.pem()).unwrap();
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(pki.path("dn.pem"))
        .output()
        .expect("openssl");
    let printed = String::from_utf8_lossy(&openssl.stdout);
    assert_eq!(printed.trim(), format!("subject={dn}"));
}

/// Keys in every PEM form the flag promises (PKCS#8, RSA, EC); bad files are refused with
/// the file named, never a panic.
#[test]
fn certificate_and_key_files() {
    let pki = make_pki();
    let ok = |cert: &str, key: &str| {
        let mut c = tls_config(&pki, TlsVerify::Peer);
        c.cert = pki.path(cert);
        c.key = pki.path(key);
        warren::tls::TlsAcceptor::load(&c).map(|_| ())
    };
    ok("server.pem", "server.key").unwrap();
    let sh = |cmd: &str| {
        let st = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(pki.dir.path())
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    // EC (SEC1) form of the same key.
    sh("openssl ec -in server.key -out server.ec.key");
    assert!(std::fs::read_to_string(pki.path("server.ec.key"))
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    ok("server.pem", "server.ec.key").unwrap();
    // An RSA key (PKCS#1) with its own self-signed certificate.
    sh("openssl genrsa -traditional -out rsa.key 2048 && \
        openssl req -new -x509 -key rsa.key -subj /CN=localhost -days 2 -out rsa.pem");
    assert!(std::fs::read_to_string(pki.path("rsa.key"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    ok("rsa.pem", "rsa.key").unwrap();
    // Wrong or missing files.
    std::fs::write(pki.path("junk"), "not a pem file\n").unwrap();
    for (cert, key, names) in [
        ("missing.pem", "server.key", "missing.pem"),
        ("junk", "server.key", "junk"),
        ("server.pem", "junk", "junk"),
        ("server.pem", "rsa.key", "rsa.key"), // key does not match the certificate
    ] {
        let e = ok(cert, key).unwrap_err();
        assert!(e.contains(names), "{cert} {key}: {e}");
    }
    let mut c = tls_config(&pki, TlsVerify::Required);
    c.ca = Some(pki.path("junk"));
    let e = warren::tls::TlsAcceptor::load(&c).err().unwrap();
    assert!(e.contains("--tls-ca") && e.contains("junk"), "{e}");
}

/// The binary refuses to start on a bad file, with a message naming it.
#[test]
fn broker_does_not_start_with_a_bad_key() {
    let pki = make_pki();
    std::fs::write(pki.path("junk"), "not a key\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--prometheus",
            "off",
            "--data-dir",
        ])
        .arg(pki.path("data"))
        .arg("--tls-cert")
        .arg(pki.path("server.pem"))
        .arg("--tls-key")
        .arg(pki.path("junk"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key") && err.contains("junk"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `--https`: the management API over TLS with the AMQPS certificate, read by Python's
/// urllib trusting the test CA (a real client, real certificate checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_answers_over_https() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let config = warren::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: None,
        prometheus: None,
        https: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(tls_config(&pki, TlsVerify::None)),
        data_dir: dir.path().to_path_buf(),
        fsync: warren_storage::FsyncPolicy::Never,
        ..warren::config::Config::default()
    };
    let server = warren::server::Server::bind(&config).await.unwrap();
    let port = server.https_addr.expect("https bound").port();
    tokio::spawn(server.run());
    let ca = pki.s("ca.pem");
    let script = r#"
import base64, json, ssl, sys, urllib.error, urllib.request
port, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
def get(user, password):
    req = urllib.request.Request(f"https://localhost:{port}/api/whoami")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            return r.status, json.loads(r.read())["name"]
    except urllib.error.HTTPError as e:
        return e.code, None
print(get("guest", "guest"), get("guest", "wrong"))
"#;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", script, &port.to_string(), &ca])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        text,
        "(200, 'guest') (401, None)",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
