use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::config::load;

/// A directory under the system temp dir, removed (made writable first) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "rwproxy-save-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn sample(&self, name: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conf")
            .join(name);
        self.file(name, &fs::read_to_string(src).unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn backend(address: &str, role: Role, weight: u32, max: u32) -> BackendConfig {
    BackendConfig {
        address: address.into(),
        role,
        weight,
        max_connections: max,
        offline: false,
    }
}

/// The default drain time, which leaves a file without `drain-timeout` as it is.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(defaults::DRAIN_TIMEOUT_SECS);

/// A snapshot of `backends` and nothing else the console changes.
fn only_backends(backends: Vec<BackendConfig>) -> Snapshot {
    Snapshot {
        backends,
        users: vec![],
        client_ips: vec![],
        drain_timeout: DRAIN,
    }
}

fn user(name: &str, password: &str) -> UserConfig {
    UserConfig {
        name: name.into(),
        password: password.into(),
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

/// Save, reload, and check the reload is `before` with exactly the snapshot's parts replaced.
/// Returns the file's new text.
fn save_and_check(path: &Path, snap: &Snapshot) -> String {
    let before = load(path).unwrap();
    save(path, before.format.clone(), snap).unwrap_or_else(|e| panic!("{e}"));
    let after = load(path).unwrap_or_else(|e| panic!("{e}\n{}", read(path)));
    assert_eq!(after.backends, snap.backends);
    assert_eq!(after.users, snap.users);
    assert_eq!(after.client_ips, snap.client_ips);
    let mut expected = before;
    expected.backends = snap.backends.clone();
    expected.users = snap.users.clone();
    expected.client_ips = snap.client_ips.clone();
    if expected.format == ConfigFormat::Toml {
        expected.drain_timeout = snap.drain_timeout;
    }
    // (The rewritten file's warnings are its own: lines move, a filled-in default goes.)
    expected.warnings.clone_from(&after.warnings);
    assert_eq!(after, expected);
    // Saving the same again changes nothing.
    let text = read(path);
    save(path, after.format.clone(), snap).unwrap();
    assert_eq!(read(path), text, "second save is not idempotent");
    text
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn unchanged_snapshot_leaves_samples_byte_identical() {
    let d = TempDir::new("same");
    for name in ["rwproxy.toml", "atlas.cnf"] {
        let p = d.sample(name);
        let orig = read(&p);
        let c = load(&p).unwrap();
        save(&p, c.format.clone(), &Snapshot::of(&c)).unwrap();
        assert_eq!(read(&p), orig, "{name}");
    }
}

/// The edit both sample tests make: drop 3307, reweight 3308, add an IPv6 and a named replica,
/// drop user app, keep report, add user new; new client list.
fn edited(c: &Config) -> Snapshot {
    let max = c.backends[0].max_connections;
    Snapshot {
        backends: vec![
            backend("127.0.0.1:3306", Role::ReadWrite, 1, max),
            backend("127.0.0.1:3308", Role::ReadOnly, 5, max),
            backend("[fd00::5]:3306", Role::ReadOnly, 3, max),
            backend("db-9.example.com:3310", Role::ReadOnly, 1, max),
        ],
        users: vec![user("report", "report_pass"), user("new", "n3w-secret")],
        client_ips: vec!["10.1.0.0/16".into(), "127.0.0.1".into()],
        drain_timeout: c.drain_timeout,
    }
}

#[test]
fn toml_sample_round_trip() {
    let d = TempDir::new("toml");
    let p = d.sample("rwproxy.toml");
    let orig = read(&p);
    let c = load(&p).unwrap();
    let text = save_and_check(&p, &edited(&c));

    // Comments and untouched settings survive byte for byte.
    for line in [
        "# rwproxy.toml - configuration of rwproxy, the MySQL read/write-splitting proxy",
        "# [[backend]] - MySQL servers, one table each (at least one is REQUIRED)",
        "#     Default: 200",
        "# [[user]] - MySQL accounts clients may log in as, one table each",
        "#     Exactly one of the two is REQUIRED.",
        "# log-path = \"/var/log/rwproxy\"",
        "#     Default: [] (everyone)",
        "charset = \"utf8mb4\"",
        "[admin]",
        // the surviving backend keeps its own extra key, the unchanged user its form + comment
        "address = \"127.0.0.1:3306\"\nrole = \"rw\"\nmax-connections = 200\n",
        "name = \"report\"\nencrypted-password = \"2OSQ7qYrHMBSqaOwHNGMkQ==\"    # report_pass\n",
    ] {
        assert!(text.contains(line), "lost {line:?}:\n{text}");
    }
    // The lines before the first backend table are unchanged except for client-ips.
    let head = |t: &str| {
        t[..t.find("[[backend]]").unwrap()]
            .lines()
            .filter(|l| !l.starts_with("client-ips"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(head(&text), head(&orig));
    assert!(text.contains("client-ips = [\"10.1.0.0/16\", \"127.0.0.1\"]\n"));
    // Removed backend and user are gone; the weight change is in place.
    assert!(!text.contains("address = \"127.0.0.1:3307\""), "{text}");
    assert!(!text.contains("name = \"app\""), "{text}");
    assert!(text.contains("address = \"127.0.0.1:3308\"\nrole = \"ro\"\nweight = 5\n"));
    assert!(text.contains("address = \"[fd00::5]:3306\"\nrole = \"ro\"\nweight = 3\n"));
    // The new user's password is stored encrypted only.
    assert!(!text.contains("n3w-secret"));
    assert!(text.contains(&format!(
        "name = \"new\"\nencrypted-password = \"{}\"",
        atlas_encrypt_for_test("n3w-secret")
    )));
}

fn atlas_encrypt_for_test(p: &str) -> String {
    pwcrypt::atlas_encrypt(p)
}

#[test]
fn atlas_sample_round_trip() {
    let d = TempDir::new("atlas");
    let p = d.sample("atlas.cnf");
    let orig = read(&p);
    let c = load(&p).unwrap();
    let text = save_and_check(&p, &edited(&c));

    let report = "report:2OSQ7qYrHMBSqaOwHNGMkQ==";
    let new = format!("new:{}", pwcrypt::atlas_encrypt("n3w-secret"));
    let expected_lines = [
        "proxy-backend-addresses = 127.0.0.1:3306".to_string(),
        "proxy-read-only-backend-addresses = 127.0.0.1:3308@5, [fd00::5]:3306@3, db-9.example.com:3310"
            .to_string(),
        format!("pwds = {report}, {new}"),
        "client-ips = 10.1.0.0/16, 127.0.0.1".to_string(),
    ];
    for l in &expected_lines {
        assert!(text.lines().any(|t| t == l), "missing {l:?}:\n{text}");
    }
    // Every other line, comments and blank lines included, is kept byte for byte and in order.
    let rewritten = [
        "proxy-read-only-backend-addresses =",
        "pwds =",
        "client-ips =",
    ];
    let others = |t: &str| {
        t.split_inclusive('\n')
            .filter(|l| !rewritten.iter().any(|k| l.starts_with(k)))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&text), others(&orig));
    assert_eq!(text.lines().count(), orig.lines().count());
    assert!(!text.contains("n3w-secret"));
}

#[test]
fn atlas_appends_missing_keys_to_its_group() {
    let d = TempDir::new("append");
    let p = d.file(
        "a.cnf",
        "# top\n[mysql-proxy]\n# c\nproxy-address = 0.0.0.0:1234\n\n# about other\n[other]\nx = 1\n",
    );
    let snap = Snapshot {
        backends: vec![
            backend("10.0.0.1:3306", Role::ReadWrite, 2, 200),
            backend("[::1]:3307", Role::ReadOnly, 1, 200),
        ],
        users: vec![user("u", "p")],
        client_ips: vec![],
        drain_timeout: DRAIN,
    };
    let text = save_and_check(&p, &snap);
    assert_eq!(
        text,
        format!(
            "# top\n[mysql-proxy]\n# c\nproxy-address = 0.0.0.0:1234\n\
             proxy-backend-addresses = 10.0.0.1:3306@2\n\
             proxy-read-only-backend-addresses = [::1]:3307\n\
             pwds = u:{}\n\n# about other\n[other]\nx = 1\n",
            pwcrypt::atlas_encrypt("p")
        )
    );

    // At the end of a file without a final newline; CRLF line ends are kept.
    let p = d.file(
        "b.cnf",
        "[mysql-proxy]\r\ninstance = b\r\nclient-ips = 1.2.3.4",
    );
    let snap = only_backends(vec![backend("127.0.0.1:3306", Role::ReadWrite, 1, 200)]);
    let text = save_and_check(&p, &snap);
    // Atlas's default backend needs no line; the emptied list keeps its key.
    assert_eq!(text, "[mysql-proxy]\r\ninstance = b\r\nclient-ips =");
    let snap = Snapshot {
        backends: vec![backend("h:1", Role::ReadOnly, 1, 200)],
        ..snap
    };
    let text = save_and_check(&p, &snap);
    assert_eq!(
        text,
        "[mysql-proxy]\r\ninstance = b\r\nclient-ips =\r\nproxy-backend-addresses =\r\nproxy-read-only-backend-addresses = h:1\r\n"
    );
}

#[test]
fn atlas_lists_read_write_backends_first() {
    let d = TempDir::new("order");
    let p = d.sample("atlas.cnf");
    let c = load(&p).unwrap();
    let snap = Snapshot {
        backends: vec![
            backend("127.0.0.1:3307", Role::ReadOnly, 1, 200),
            backend("127.0.0.1:3306", Role::ReadWrite, 1, 200),
        ],
        ..Snapshot::of(&c)
    };
    save(&p, ConfigFormat::Atlas, &snap).unwrap();
    let after = load(&p).unwrap();
    assert_eq!(
        after.backends,
        [snap.backends[1].clone(), snap.backends[0].clone()]
    );
}

#[test]
fn atlas_rejects_what_pwds_cannot_hold() {
    let d = TempDir::new("names");
    let p = d.sample("atlas.cnf");
    let orig = read(&p);
    let c = load(&p).unwrap();
    for bad in ["a:b", "a,b", "a\nb"] {
        let mut snap = Snapshot::of(&c);
        snap.users.push(user(bad, "x"));
        let e = save(&p, ConfigFormat::Atlas, &snap)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: not saved: ", p.display())),
            "{e}"
        );
        assert_eq!(read(&p), orig);
    }
}

#[test]
fn toml_password_changes_are_encrypted() {
    let d = TempDir::new("pw");
    let p = d.sample("rwproxy.toml");
    let c = load(&p).unwrap();
    let mut snap = Snapshot::of(&c);
    snap.users[0].password = "Qx7-first".into(); // app, was plain text
    snap.users[1].password = "Qx7-second".into(); // report, was encrypted with a comment
    let text = save_and_check(&p, &snap);
    assert!(!text.contains("Qx7-"), "{text}");
    assert!(
        !text.contains("app_pass") && !text.contains("# report_pass"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "name = \"app\"\nencrypted-password = \"{}\"\n",
        pwcrypt::atlas_encrypt("Qx7-first")
    )));
}

#[test]
fn toml_empty_lists() {
    let d = TempDir::new("empty");
    let p = d.sample("rwproxy.toml");
    let c = load(&p).unwrap();
    let snap = only_backends(c.backends[..1].to_vec());
    let text = save_and_check(&p, &snap);
    assert!(
        text.contains("#     Default: [] (everyone)\nclient-ips = []\n"),
        "{text}"
    );
    assert!(!text.contains("[[user]]\n"), "{text}");
    // The comment introducing the (now empty) user section is still there.
    assert!(
        text.contains("#     Exactly one of the two is REQUIRED."),
        "{text}"
    );

    // And back: users and client addresses where there were none.
    let p = d.file(
        "min.toml",
        "# minimal\n[[backend]]\naddress = \"h:1\"\nrole = \"rw\"\n",
    );
    let snap = Snapshot {
        backends: vec![
            backend("h:1", Role::ReadWrite, 1, 200),
            backend("[::1]:2", Role::ReadOnly, 2, u32::MAX),
        ],
        users: vec![user("u", "")],
        client_ips: vec!["::1".into()],
        drain_timeout: DRAIN,
    };
    let text = save_and_check(&p, &snap);
    assert!(text.starts_with("# minimal\n[[backend]]\naddress = \"h:1\"\nrole = \"rw\"\n"));
    assert!(text.contains("max-connections = 0"), "{text}");
}

#[test]
fn toml_backend_keeps_its_table_when_moved() {
    let d = TempDir::new("move");
    let p = d.file(
        "m.toml",
        "[proxy]\nlisten = \":1\"\n\n# backends\n[[backend]]\naddress = \"a:1\"\nrole = \"rw\"\n\n\
         # the replica\n[[backend]]\naddress = \"b:1\" # B\nrole = \"ro\"\nmax-connections = 7\n",
    );
    let snap = only_backends(vec![
        backend("b:1", Role::ReadWrite, 1, 7),
        backend("a:1", Role::ReadOnly, 4, 200),
    ]);
    let text = save_and_check(&p, &snap);
    assert_eq!(
        text,
        "[proxy]\nlisten = \":1\"\n\n# backends\n\n# the replica\n[[backend]]\naddress = \"b:1\" # B\n\
         role = \"rw\"\nmax-connections = 7\n\n[[backend]]\naddress = \"a:1\"\nrole = \"ro\"\nweight = 4\n"
    );
}

/// A backend an operator took offline is saved as `offline = true` (a new table gets it too)
/// and loads offline; once it is back, the key goes and the file is as before.
#[test]
fn toml_offline_backends_are_saved_and_cleared() {
    let d = TempDir::new("offline");
    let orig = "[proxy]\nlisten = \":1\"\n\n[[backend]]\naddress = \"a:1\"\nrole = \"rw\"\n\n\
                [[backend]]\naddress = \"b:1\" # B\nrole = \"ro\"\n";
    let p = d.file("o.toml", orig);
    let offline = |mut b: BackendConfig| {
        b.offline = true;
        b
    };
    let mut snap = only_backends(vec![
        backend("a:1", Role::ReadWrite, 1, 200),
        offline(backend("b:1", Role::ReadOnly, 1, 200)),
        offline(backend("c:1", Role::ReadOnly, 1, 200)),
    ]);
    let text = save_and_check(&p, &snap);
    assert_eq!(
        text,
        "[proxy]\nlisten = \":1\"\n\n[[backend]]\naddress = \"a:1\"\nrole = \"rw\"\n\n\
         [[backend]]\naddress = \"b:1\" # B\nrole = \"ro\"\noffline = true\n\n\
         [[backend]]\naddress = \"c:1\"\nrole = \"ro\"\nweight = 1\noffline = true\n"
    );
    snap.backends.pop();
    snap.backends[1].offline = false;
    save_and_check(&p, &snap);
    assert_eq!(read(&p), orig);
}

/// `SET drain_timeout` is saved as `[proxy] drain-timeout`, keeping the comment beside it; a
/// file without `[proxy]` gets one.
#[test]
fn toml_drain_timeout_is_saved() {
    let d = TempDir::new("drain");
    let p = d.file(
        "d.toml",
        "[proxy]\ndrain-timeout = 10 # short\n\n[[backend]]\naddress = \"a:1\"\nrole = \"rw\"\n",
    );
    let mut snap = Snapshot::of(&load(&p).unwrap());
    snap.drain_timeout = std::time::Duration::from_secs(45);
    let text = save_and_check(&p, &snap);
    assert!(
        text.starts_with("[proxy]\ndrain-timeout = 45 # short\n"),
        "{text}"
    );

    let p = d.file("n.toml", "[[backend]]\naddress = \"a:1\"\nrole = \"rw\"\n");
    let text = save_and_check(&p, &snap);
    assert!(text.contains("[proxy]\ndrain-timeout = 45\n"), "{text}");
}

/// Atlas's format has no offline state: the backends are saved, the state is not.
#[test]
fn atlas_saves_offline_backends_as_in_service() {
    let d = TempDir::new("atlas-offline");
    let p = d.sample("atlas.cnf");
    let c = load(&p).unwrap();
    let mut snap = Snapshot::of(&c);
    snap.backends[1].offline = true;
    save(&p, c.format.clone(), &snap).unwrap();
    let after = load(&p).unwrap();
    assert_eq!(after.backends, Snapshot::of(&c).backends);
}

#[test]
fn nothing_is_written_when_the_result_would_not_load() {
    let d = TempDir::new("refuse");
    for name in ["rwproxy.toml", "atlas.cnf"] {
        let p = d.sample(name);
        let orig = read(&p);
        let c = load(&p).unwrap();
        let snap = Snapshot {
            backends: vec![],
            ..Snapshot::of(&c)
        };
        let e = save(&p, c.format.clone(), &snap).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: not saved: ", p.display())),
            "{e}"
        );
        let mut snap = Snapshot::of(&c);
        snap.client_ips.push("not an address".into());
        assert!(save(&p, c.format.clone(), &snap).is_err());
        assert_eq!(read(&p), orig);
    }
    assert!(leftovers(&d.0).is_empty());
    let e = save(
        &d.0.join("missing.toml"),
        ConfigFormat::Toml,
        &Snapshot {
            backends: vec![],
            users: vec![],
            client_ips: vec![],
            drain_timeout: DRAIN,
        },
    );
    assert!(matches!(e, Err(ConfigError::Read { .. })));
}

#[test]
fn keeps_permissions() {
    let d = TempDir::new("perm");
    let p = d.sample("rwproxy.toml");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    let c = load(&p).unwrap();
    save(&p, ConfigFormat::Toml, &edited(&c)).unwrap();
    let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    assert!(leftovers(&d.0).is_empty());
}

#[test]
fn read_only_directory_is_a_clear_error() {
    let d = TempDir::new("ro");
    let p = d.sample("atlas.cnf");
    let orig = read(&p);
    let c = load(&p).unwrap();
    fs::set_permissions(&d.0, fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores directory permissions, so the save runs on a thread whose filesystem uid
    // is `nobody`: the fsuid and the capabilities it clears are per thread on Linux.
    let (path, snap) = (p.clone(), edited(&c));
    let e = std::thread::spawn(move || {
        // SAFETY: changes only this short-lived thread's filesystem credentials.
        unsafe { libc::setfsuid(65534) };
        save(&path, ConfigFormat::Atlas, &snap)
    })
    .join()
    .unwrap()
    .unwrap_err();
    assert!(matches!(e, ConfigError::Write { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "cannot write {}: creating a temporary file in ",
            p.display()
        )) && msg.ends_with(": Permission denied"),
        "{msg}"
    );
    assert_eq!(read(&p), orig);
    assert!(leftovers(&d.0).is_empty());
}

#[test]
fn a_symlinked_file_is_replaced_behind_the_link() {
    let d = TempDir::new("link");
    let real = d.sample("rwproxy.toml");
    let link = d.0.join("link.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let c = load(&link).unwrap();
    save(&link, ConfigFormat::Toml, &edited(&c)).unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(load(&real).unwrap().backends, edited(&c).backends);
    assert!(leftovers(&d.0).is_empty());
}
