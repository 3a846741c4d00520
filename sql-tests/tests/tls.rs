//! TLS on both legs: clients to the proxy (`mariadb --ssl`, mysql_async with rustls, a raw
//! client for `caching_sha2_password` full authentication), `require-secure-transport`, and
//! the proxy to MariaDB servers started with `--ssl-cert` (CA verified, wrong CA refused).
//!
//! Certificates are made per run with rcgen into a scratch directory: a test CA, a server
//! certificate for `localhost`/`127.0.0.1` (used by the servers and the proxy alike), a client
//! certificate, and a second, unrelated CA.

use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, OptsBuilder, SslOpts};
use mysql_common::constants::CapabilityFlags as Cap;
use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rwproxy::protocol::packet::{read_handshake_packet, PacketReader, PacketWriter};
use rwproxy::protocol::stream::{self, StreamRead, StreamWrite};
use rwproxy_sql_tests::cli::mariadb;
use rwproxy_sql_tests::raw::err_text;
use rwproxy_sql_tests::sandbox::{scratch_dir, ServerCert};
use rwproxy_sql_tests::{proxy, Cluster, Options, APP_PASSWORD, APP_USER, DATABASE};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

struct Pki {
    ca: PathBuf,
    /// A CA that signed nothing here: verifying against it must fail.
    other_ca: PathBuf,
    server: ServerCert,
    client: ServerCert,
    /// A client certificate signed by `other_ca`.
    stranger: ServerCert,
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> ServerCert {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, issuer).unwrap();
    ServerCert {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
    }
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = scratch_dir("tls").unwrap();
        let good = ca("rwproxy test CA");
        let other = ca("unrelated test CA");
        Pki {
            ca: write(&dir, "ca.pem", &good.pem()),
            other_ca: write(&dir, "other-ca.pem", &other.pem()),
            server: leaf(&dir, "server", &["localhost", "127.0.0.1"], &good),
            client: leaf(&dir, "client", &["app-client"], &good),
            stranger: leaf(&dir, "stranger", &["app-client"], &other),
        }
    })
}

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();

/// A primary and one replica, both offering TLS with the test server certificate.
async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async {
            Cluster::start_with(Options {
                replicas: 1,
                tls: Some(pki().server.clone()),
                ..Options::default()
            })
            .await
            .expect("sandbox cluster")
        })
        .await
}

/// The standard test config with `keys` added to `[proxy]`.
async fn start_proxy(keys: &str) -> proxy::Proxy {
    let c = cluster().await;
    let toml =
        proxy::config_toml(c, &[1], "").replacen("[proxy]\n", &format!("[proxy]\n{keys}\n"), 1);
    proxy::start(&toml).await.expect("proxy starts")
}

fn client_tls_keys() -> String {
    let p = pki();
    format!(
        "ssl-cert = {:?}\nssl-key = {:?}\n",
        p.server.cert.display().to_string(),
        p.server.key.display().to_string()
    )
}

fn tls_opts(p: &proxy::Proxy, identity: Option<&ServerCert>) -> OptsBuilder {
    let mut ssl = SslOpts::default()
        .with_root_certs(vec![pki().ca.clone().into()])
        .with_disable_built_in_roots(true);
    if let Some(id) = identity {
        ssl = ssl.with_client_identity(Some(ClientIdentity::new(
            id.cert.clone().into(),
            id.key.clone().into(),
        )));
    }
    OptsBuilder::from_opts(p.opts()).ssl_opts(Some(ssl))
}

fn ca_args() -> Vec<String> {
    vec![
        "--ssl".into(),
        format!("--ssl-ca={}", pki().ca.display()),
        "--ssl-verify-server-cert".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_gets_tls_through_the_proxy() {
    let p = start_proxy(&client_tls_keys()).await;
    let mut args = ca_args();
    args.extend(["-e".into(), "status; SELECT 40 + 2 AS answer".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = mariadb(p.addr.port(), APP_PASSWORD, &args, None);
    assert!(ok, "mariadb --ssl through the proxy failed: {err}");
    // The CLI's own view of its connection (to the proxy): `SHOW STATUS LIKE 'Ssl_cipher'`
    // would be answered by a backend about the backend leg.
    let ssl_line = out
        .lines()
        .find(|l| l.starts_with("SSL:"))
        .unwrap_or_default();
    assert!(
        ssl_line.contains("Cipher in use is"),
        "client leg not TLS: {ssl_line:?}\n{out}"
    );
    assert!(out.contains("42"), "{out}");

    // With a CA that did not sign the proxy's certificate the CLI refuses to go on.
    let (ok, _, err) = mariadb(
        p.addr.port(),
        APP_PASSWORD,
        &[
            "--ssl",
            &format!("--ssl-ca={}", pki().other_ca.display()),
            "--ssl-verify-server-cert",
            "-e",
            "SELECT 1",
        ],
        None,
    );
    assert!(!ok, "verification against an unrelated CA must fail");
    assert!(
        err.contains("2026") || err.to_lowercase().contains("ssl"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_still_work_when_tls_is_configured() {
    let p = start_proxy(&client_tls_keys()).await;
    let (ok, out, err) = mariadb(
        p.addr.port(),
        APP_PASSWORD,
        &["--skip-ssl", "-e", "status; SELECT 7 AS seven"],
        None,
    );
    assert!(ok, "plain mariadb client refused: {err}");
    let ssl_line = out
        .lines()
        .find(|l| l.starts_with("SSL:"))
        .unwrap_or_default();
    assert!(ssl_line.contains("Not in use"), "{ssl_line:?}\n{out}");
    assert!(out.contains('7'), "{out}");

    let mut c = p
        .conn()
        .await
        .expect("plain mysql_async through a TLS-enabled proxy");
    let n: u32 = c.query_first("SELECT 5").await.unwrap().unwrap();
    assert_eq!(n, 5);
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_async_with_rustls() {
    // require-secure-transport proves the session really is TLS: a plain one is refused.
    let p = start_proxy(&(client_tls_keys() + "require-secure-transport = true\n")).await;
    let mut c = Conn::new(tls_opts(&p, None))
        .await
        .expect("mysql_async over TLS");
    c.query_drop("CREATE TABLE IF NOT EXISTS tls_rows (id INT PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    c.query_drop("REPLACE INTO tls_rows VALUES (1, 'über TLS ✓')")
        .await
        .unwrap();
    // The read below goes to the replica.
    cluster().await.wait_replicas_caught_up().await.unwrap();
    let v: String = c
        .exec_first("SELECT v FROM tls_rows WHERE id = ?", (1,))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "über TLS ✓");
    // A result larger than one TLS record (16 KiB) and than the proxy's write buffer.
    let big: Vec<(u32, String)> = c
        .query("SELECT seq, REPEAT('x', 1000) FROM seq_1_to_300")
        .await
        .unwrap();
    assert_eq!(big.len(), 300);
    assert!(big.iter().all(|(_, s)| s.len() == 1000));
    c.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_secure_transport_rejects_plain_clients() {
    let p = start_proxy(&(client_tls_keys() + "require-secure-transport = true\n")).await;

    // MariaDB 10.11 with require_secure_transport=ON answers a plain login with 1045.
    let err = Conn::new(p.opts())
        .await
        .expect_err("plain mysql_async must be refused");
    match err {
        mysql_async::Error::Server(e) => {
            assert_eq!((e.code, e.state.as_str()), (1045, "28000"), "{e}");
            assert!(
                e.message.starts_with("Access denied for user 'app'@"),
                "{e}"
            );
        }
        other => panic!("expected a server error, got {other}"),
    }
    let (ok, _, err) = mariadb(
        p.addr.port(),
        APP_PASSWORD,
        &["--skip-ssl", "-e", "SELECT 1"],
        None,
    );
    assert!(!ok);
    assert!(err.contains("ERROR 1045 (28000)"), "{err}");

    let mut args = ca_args();
    args.extend(["-e".into(), "SELECT 1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = mariadb(p.addr.port(), APP_PASSWORD, &args, None);
    assert!(ok, "TLS client refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_against_ssl_ca() {
    let keys = client_tls_keys() + &format!("ssl-ca = {:?}\n", pki().ca.display().to_string());
    let p = start_proxy(&keys).await;
    let mut c = Conn::new(tls_opts(&p, Some(&pki().client)))
        .await
        .expect("client certificate signed by ssl-ca");
    c.query_drop("SELECT 1").await.unwrap();
    c.disconnect().await.unwrap();
    // A client without a certificate is admitted, as by a server whose account has no
    // REQUIRE X509.
    let c = Conn::new(tls_opts(&p, None))
        .await
        .expect("no client certificate");
    c.disconnect().await.unwrap();
    let err = Conn::new(tls_opts(&p, Some(&pki().stranger)))
        .await
        .expect_err("a certificate from another CA must be refused");
    assert!(
        matches!(err, mysql_async::Error::Io(_)),
        "expected a TLS failure, got {err}"
    );
}

/// The client's side of a `caching_sha2_password` login done by hand: real drivers always
/// get the fast path from the proxy (it knows the password), so only a client that sends a
/// scramble that cannot be verified reaches full authentication.
struct RawLogin {
    reader: PacketReader<StreamRead>,
    writer: PacketWriter<StreamWrite>,
    seq: u8,
}

impl RawLogin {
    /// Connects, switches to TLS when `tls`, and sends a login request whose
    /// `caching_sha2_password` scramble is `scramble`.
    async fn start(addr: std::net::SocketAddr, tls: bool, scramble: &[u8]) -> RawLogin {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let (seq, greeting) = read_handshake_packet(&mut tcp).await.unwrap();
        let hello: HandshakePacket = mysql_common::io::ParseBuf(&greeting).parse(()).unwrap();
        let mut caps = Cap::CLIENT_PROTOCOL_41
            | Cap::CLIENT_SECURE_CONNECTION
            | Cap::CLIENT_LONG_PASSWORD
            | Cap::CLIENT_TRANSACTIONS
            | Cap::CLIENT_CONNECT_WITH_DB
            | Cap::CLIENT_PLUGIN_AUTH
            | Cap::CLIENT_MULTI_RESULTS;
        let mut seq = seq + 1;
        let (r, w) = if tls {
            assert!(
                hello.capabilities().contains(Cap::CLIENT_SSL),
                "TLS not offered"
            );
            caps |= Cap::CLIENT_SSL;
            let mut req = vec![32, 0, 0, seq];
            req.extend_from_slice(&caps.bits().to_le_bytes());
            req.extend_from_slice(&(16u32 << 20).to_le_bytes());
            req.push(45);
            req.extend_from_slice(&[0; 23]);
            tcp.write_all(&req).await.unwrap();
            seq += 1;
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(&pki().ca).unwrap();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                roots.add(c.unwrap()).unwrap();
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let s = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap();
            stream::tls(s)
        } else {
            stream::plain(tcp)
        };
        let mut login = RawLogin {
            reader: PacketReader::new(r),
            writer: PacketWriter::new(w),
            seq,
        };
        let resp = HandshakeResponse::new(
            Some(scramble.to_vec()),
            (10, 11, 0),
            Some(APP_USER.as_bytes()),
            Some(DATABASE.as_bytes()),
            Some(AuthPlugin::CachingSha2Password),
            caps,
            None,
            16 << 20,
        );
        let mut buf = Vec::new();
        resp.serialize(&mut buf);
        login.send(&buf).await;
        login
    }

    async fn send(&mut self, payload: &[u8]) {
        self.seq = self.writer.write_packet(self.seq, payload).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    async fn read(&mut self) -> Vec<u8> {
        let mut p = Vec::new();
        self.seq = self.reader.read_logical(&mut p).await.unwrap() + 1;
        p
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_sha2_full_authentication_over_tls() {
    let p = start_proxy(&client_tls_keys()).await;
    let junk = [0x5Au8; 32];

    // Over TLS a scramble that fails the fast path gets "perform full authentication", and
    // the password sent in clear (inside TLS) logs in.
    let mut c = RawLogin::start(p.addr, true, &junk).await;
    assert_eq!(
        c.read().await,
        [0x01, 0x04],
        "full authentication requested"
    );
    c.send(format!("{APP_PASSWORD}\0").as_bytes()).await;
    let ok = c.read().await;
    assert_eq!(
        ok.first(),
        Some(&0x00),
        "login OK expected: {}",
        err_text(&ok)
    );
    // COM_CHANGE_USER over TLS gets full authentication too.
    let mut change = vec![0x11];
    for part in [
        APP_USER.as_bytes(),
        &[0],
        &[32],
        &junk,
        DATABASE.as_bytes(),
        &[0, 45, 0],
    ] {
        change.extend_from_slice(part);
    }
    change.extend_from_slice(b"caching_sha2_password\0");
    c.seq = 0;
    c.send(&change).await;
    assert_eq!(
        c.read().await,
        [0x01, 0x04],
        "full authentication on change user"
    );
    c.send(format!("{APP_PASSWORD}\0").as_bytes()).await;
    let ok = c.read().await;
    assert_eq!(
        ok.first(),
        Some(&0x00),
        "change user OK expected: {}",
        err_text(&ok)
    );
    c.seq = 0;
    c.send(b"\x03SELECT 1").await;
    assert_eq!(c.read().await, [1], "one column");

    // A wrong clear password is refused like a wrong scramble.
    let mut c = RawLogin::start(p.addr, true, &junk).await;
    assert_eq!(c.read().await, [0x01, 0x04]);
    c.send(b"not the password\0").await;
    let e = c.read().await;
    assert!(
        err_text(&e).starts_with("1045 (28000): Access denied for user 'app'"),
        "{}",
        err_text(&e)
    );

    // On plain TCP full authentication would need an RSA key exchange: the proxy never asks
    // for it, and a scramble that fails the fast path is a wrong password.
    let mut c = RawLogin::start(p.addr, false, &junk).await;
    let e = c.read().await;
    assert!(
        err_text(&e).starts_with("1045 (28000): Access denied for user 'app'"),
        "{}",
        err_text(&e)
    );

    // A client that sent no scramble (its default plugin was not the greeting's) is
    // switched to caching_sha2_password and challenged; a junk answer gets full
    // authentication too.
    let mut c = RawLogin::start(p.addr, true, &[]).await;
    let switch = c.read().await;
    assert!(
        switch.starts_with(b"\xFEcaching_sha2_password\0"),
        "{switch:?}"
    );
    c.send(&junk).await;
    assert_eq!(c.read().await, [0x01, 0x04]);
    c.send(format!("{APP_PASSWORD}\0").as_bytes()).await;
    assert_eq!(c.read().await.first(), Some(&0x00));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_with_caching_sha2_over_tls() {
    let p = start_proxy(&client_tls_keys()).await;
    let mut args = ca_args();
    args.extend([
        "--default-auth=caching_sha2_password".into(),
        "--plugin-dir=/usr/lib/x86_64-linux-gnu/libmariadb3/plugin".into(),
        "-e".into(),
        "SELECT CURRENT_USER() LIKE 'app@%' AS ok".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = mariadb(p.addr.port(), APP_PASSWORD, &args, None);
    assert!(ok, "caching_sha2_password login over TLS failed: {err}");
    assert!(out.contains('1'), "{out}");
}

fn backend_tls_keys(ca: &Path) -> String {
    format!(
        "backend-ssl = true\nbackend-ssl-ca = {:?}\n",
        ca.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_use_verified_tls() {
    let p = start_proxy(&backend_tls_keys(&pki().ca)).await;
    let mut c = p.conn().await.expect("login through a TLS backend leg");
    // Answered by the backend about the proxy's connection to it.
    let cipher: Option<(String, String)> = c
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    let cipher = cipher.expect("a row").1;
    assert!(!cipher.is_empty(), "backend leg is not TLS");
    // Writes and reads (primary and replica legs) both work.
    c.query_drop("CREATE TABLE IF NOT EXISTS tls_backend (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("REPLACE INTO tls_backend VALUES (1)")
        .await
        .unwrap();
    for _ in 0..4 {
        let n: Option<u32> = c
            .query_first("/*master*/ SELECT COUNT(*) FROM tls_backend")
            .await
            .unwrap();
        assert_eq!(n, Some(1));
        let cipher: Option<(String, String)> = c
            .query_first("SHOW STATUS LIKE 'Ssl_cipher'")
            .await
            .unwrap();
        assert!(!cipher.unwrap().1.is_empty(), "a read went over plain TCP");
    }
    c.disconnect().await.unwrap();
}

/// A backend connection over TLS that the proxy closes says goodbye (`COM_QUIT`, encrypted)
/// as a plain one does: the server logs no "Aborted connection … (Got an error reading
/// communication packets)" for it. (Before: one per connection.) The test reads the error
/// log for its own connections' ids: the server-wide `Aborted_clients` also counts the other
/// tests' proxies, killed while this one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_tls_backend_connections_are_not_aborted_clients() {
    let cl = cluster().await;
    let p = start_proxy(&backend_tls_keys(&pki().ca)).await;
    let mut root = cl.primary.root_conn().await.unwrap();
    let mut threads = Vec::new();
    for _ in 0..3 {
        let mut c = p.conn().await.unwrap();
        // The server's id for the connection, which an XA statement then marks for closing
        // when its session ends (rather than going back to the pool).
        let thread: u64 = c
            .query_first("/*master*/ SELECT @@pseudo_thread_id")
            .await
            .unwrap()
            .unwrap();
        c.query_drop("XA RECOVER").await.unwrap();
        c.disconnect().await.unwrap();
        let t0 = Instant::now();
        loop {
            let open: Option<u64> = root
                .query_first(format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread}"
                ))
                .await
                .unwrap();
            if open == Some(0) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "connection {thread} still open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        threads.push(thread);
    }
    // The server logs an aborted connection before the connection leaves the process list.
    let log = std::fs::read_to_string(&cl.primary.error_log).unwrap();
    let aborted: Vec<&str> = log
        .lines()
        .filter(|l| {
            threads
                .iter()
                .any(|t| l.contains(&format!("Aborted connection {t} to")))
        })
        .collect();
    assert!(
        aborted.is_empty(),
        "closed TLS connections {threads:?} were aborted: {aborted:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_with_a_certificate_from_another_ca_is_refused() {
    let c = cluster().await;
    let p = start_proxy(&backend_tls_keys(&pki().other_ca)).await;
    // The login names a schema, so the proxy already needs a backend connection for it.
    let err = match p.conn().await {
        Ok(mut conn) => conn
            .query_drop("SELECT 1")
            .await
            .expect_err("a backend whose certificate does not verify must not be used")
            .into(),
        Err(e) => e,
    };
    let msg = err.to_string();
    let names_a_backend = c
        .servers()
        .any(|s| msg.contains(&format!("TLS to {} failed", s.addr())));
    assert!(names_a_backend, "error does not name the backend: {msg}");
    assert!(msg.contains("certificate"), "error does not say why: {msg}");
}
