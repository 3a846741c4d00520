//! Drivers' own test suites, written by other people, run directly against the sandbox primary
//! and then through rwproxy in front of the whole cluster (primary + 2 replicas). The direct
//! run must be clean: it proves the sandbox is set up the way the suite's authors run it, so
//! whatever then fails through the proxy is the proxy's doing. Those failures must match the
//! checked-in lists in `sql-tests/conformance/*.expected`, each entry with its reason;
//! `sql-tests/CONFORMANCE.md` has the tables and the commands behind them.
//!
//! The suites are built and unpacked under `$CARGO_TARGET_DIR/conformance`, so CI's cached
//! target dir keeps them between runs; nothing of theirs is committed here.

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use rwproxy_sql_tests::conformance::{self, Outcome};
use rwproxy_sql_tests::sandbox::ensure_installed;
use rwproxy_sql_tests::{proxy, Cluster, APP_PASSWORD, APP_USER};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One suite at a time: each brings its own cluster, and two suites' timing-sensitive tests
/// (idle timeouts, pool expiry) sharing the two cores would only make each other flaky.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A suite that hangs through the proxy fails the test instead of stalling CI.
const SUITE_LIMIT: Duration = Duration::from_secs(900);

const PYMYSQL_VERSION: &str = "0.10.1";

/// Runs of a failed mysql_async test on its own before its failure counts.
const RERUNS: usize = 2;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sql-tests sits in the workspace")
        .to_path_buf()
}

/// `<target>/conformance`: this test binary lives in `<target>/<profile>/deps/`.
fn scratch_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test binary inside <target>/<profile>/deps");
    let dir = target.join("conformance");
    std::fs::create_dir_all(&dir).expect("creating the conformance scratch dir");
    dir
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn expected(file: &str) -> std::collections::BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conformance")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    conformance::parse_expected(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cluster the way each suite's own CI configures its server: packets up to 35 MiB
/// (mysql_async's CI passes `--max-allowed-packet=36700160`) and `secure_auth` off (its
/// MariaDB job passes `--secure-auth=OFF`, for the mysql_old_password user in
/// `should_change_user`). `local_infile` is on by default in MariaDB.
async fn cluster_for_suites() -> Cluster {
    let cluster = Cluster::start(2).await.expect("sandbox cluster");
    for s in cluster.servers() {
        let mut c = s.root_conn().await.expect("root login");
        c.query_drop("SET GLOBAL max_allowed_packet = 36700160, secure_auth = 0")
            .await
            .expect("server settings for the suites");
    }
    cluster
}

/// Reports and judges one suite: a clean direct run, then the proxied run against its list.
fn judge(suite: &str, direct: &Outcome, proxied: &Outcome, list: &str) {
    println!("{suite} direct:        {}", direct.summary());
    println!("{suite} through proxy: {}", proxied.summary());
    assert!(
        direct.failed().is_empty(),
        "{suite} fails directly against the primary, so the sandbox is not set up as the suite \
         needs: {:?}",
        direct.failed()
    );
    assert!(
        proxied.tests.len() == direct.tests.len(),
        "{suite} ran {} tests through the proxy but {} directly",
        proxied.tests.len(),
        direct.tests.len()
    );
    let problems = conformance::check_expected(proxied, &expected(list));
    assert!(
        problems.is_empty(),
        "{suite} through rwproxy (see sql-tests/conformance/{list}):\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// mysql_async

/// The mysql_async sources cargo fetched for this workspace: the version `Cargo.lock` pins (the
/// one the proxy is tested with), unpacked in cargo's registry.
fn mysql_async_source() -> Result<PathBuf> {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock"))?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.lines().any(|l| l.trim() == "name = \"mysql_async\""))
        .and_then(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .context("no mysql_async in Cargo.lock")?;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry/src");
    for index in
        std::fs::read_dir(&registry).with_context(|| format!("reading {}", registry.display()))?
    {
        let dir = index?.path().join(format!("mysql_async-{version}"));
        if dir.join("Cargo.toml").is_file() {
            return Ok(dir);
        }
    }
    bail!(
        "mysql_async-{version} is not unpacked under {}",
        registry.display()
    )
}

/// Copies mysql_async's crate (its `#[cfg(test)]` tests included) into the scratch dir and
/// builds its test binaries there; returns their paths.
fn build_mysql_async_suite() -> Result<Vec<PathBuf>> {
    let src = mysql_async_source()?;
    let scratch = scratch_dir();
    let crate_dir = scratch.join(src.file_name().expect("named dir"));
    conformance::copy_tree_once(&src, &crate_dir)?;
    // Inside a workspace's target dir cargo would take the copy for a stray member.
    let manifest = crate_dir.join("Cargo.toml");
    let toml = std::fs::read_to_string(&manifest)?;
    if !toml.lines().any(|l| l.trim() == "[workspace]") {
        std::fs::write(&manifest, format!("{toml}\n[workspace]\n"))?;
    }
    let t0 = Instant::now();
    let out = conformance::run_bounded(
        Command::new(cargo())
            .args([
                "test",
                "--release",
                "--locked",
                "--no-run",
                "--lib",
                "--test",
                "generic",
                "--message-format=json",
            ])
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", scratch.join("target"))
            .env("CARGO_TERM_COLOR", "never"),
        SUITE_LIMIT,
    )?;
    let bins: Vec<PathBuf> = out
        .split("\"executable\":\"")
        .skip(1)
        .filter_map(|c| c.split('"').next())
        .map(PathBuf::from)
        .collect();
    if bins.len() != 2 {
        bail!("expected the lib and generic test binaries from cargo, got {bins:?}:\n{out}");
    }
    println!(
        "mysql_async suite built in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(bins)
}

fn run_mysql_async(bins: &[PathBuf], port: u16) -> Outcome {
    let url =
        format!("mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/mysql?prefer_socket=false");
    let mut all = Outcome::default();
    for bin in bins {
        let out = conformance::run_bounded(
            Command::new(bin)
                .env("DATABASE_URL", &url)
                .env("RUST_BACKTRACE", "0"),
            SUITE_LIMIT,
        )
        .expect("running the mysql_async suite");
        assert!(
            out.contains("test result:"),
            "{} ended without a libtest summary:\n{out}",
            bin.display()
        );
        let mut o = Outcome::parse_libtest(&out);
        if out.contains("FAILED") {
            println!("---- {} against port {port}:\n{out}", bin.display());
        }
        // Some of its pool tests assert on sleeps of a second or so, which a loaded 2-core
        // machine can stretch (`check_absolute_connection_ttl` once failed twice in a row
        // directly against the primary): a failure counts only if the test fails on its own
        // twice more.
        for name in o
            .failed()
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            for _ in 0..RERUNS {
                let again = conformance::run_bounded(
                    Command::new(bin)
                        .args([name.as_str(), "--exact"])
                        .env("DATABASE_URL", &url)
                        .env("RUST_BACKTRACE", "0"),
                    SUITE_LIMIT,
                )
                .expect("re-running a failed mysql_async test");
                let rerun = Outcome::parse_libtest(&again);
                println!("rerun of {name} against port {port}: {}", rerun.summary());
                let Some(&status) = rerun.tests.get(&name) else {
                    break;
                };
                o.tests.insert(name.clone(), status);
                if !rerun.failed().contains(&name.as_str()) {
                    break;
                }
            }
        }
        all.merge(o).expect("merging");
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_async_suite_through_proxy() {
    let _serial = SERIAL.lock().await;
    let bins = tokio::task::spawn_blocking(build_mysql_async_suite)
        .await
        .unwrap()
        .expect("building mysql_async's test suite");
    let cluster = cluster_for_suites().await;
    let p = proxy::start(&proxy::config_toml(&cluster, &[1, 1], ""))
        .await
        .unwrap();

    let t0 = Instant::now();
    let b = bins.clone();
    let primary = cluster.primary.port;
    let direct = tokio::task::spawn_blocking(move || run_mysql_async(&b, primary))
        .await
        .unwrap();
    let t_direct = t0.elapsed();
    // The suite reads tables it has just created; the direct run's writes must not still be
    // arriving on the replicas.
    cluster.wait_replicas_caught_up().await.unwrap();
    let port = p.addr.port();
    let proxied = tokio::task::spawn_blocking(move || run_mysql_async(&bins, port))
        .await
        .unwrap();
    println!(
        "mysql_async suite: {:.1}s direct, {:.1}s through the proxy",
        t_direct.as_secs_f64(),
        (t0.elapsed() - t_direct).as_secs_f64()
    );
    judge("mysql_async", &direct, &proxied, "mysql_async.expected");
}

// ---------------------------------------------------------------------------------------
// PyMySQL

/// PyMySQL's sdist, unpacked in the scratch dir. 0.10.1 is the last release whose sdist ships
/// the test suite (`pymysql/tests`); later ones carry only `tests/test_auth.py`.
fn pymysql_suite() -> Result<PathBuf> {
    ensure_installed("pytest-3", &["python3-pytest"])?;
    ensure_installed("pip3", &["python3-pip"])?;
    let scratch = scratch_dir();
    let dir = scratch.join(format!("PyMySQL-{PYMYSQL_VERSION}"));
    if !dir.join("pymysql/tests").is_dir() {
        let dl = scratch.join("pymysql-sdist");
        let out = conformance::run_bounded(
            Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:"])
                .arg(format!("PyMySQL=={PYMYSQL_VERSION}"))
                .arg("-d")
                .arg(&dl),
            Duration::from_secs(300),
        )?;
        let tarball = dl.join(format!("PyMySQL-{PYMYSQL_VERSION}.tar.gz"));
        if !tarball.is_file() {
            bail!("pip download left no {}:\n{out}", tarball.display());
        }
        let st = Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&scratch)
            .status()?;
        if !st.success() {
            bail!("unpacking {}: {st}", tarball.display());
        }
    }
    // The sdist leaves out the data file of the two LOAD DATA LOCAL tests; they only count
    // the rows it loads into an (a INT, b INT) table.
    let data = dir.join("pymysql/tests/data");
    std::fs::create_dir_all(&data)?;
    let rows: String = (0..22749).map(|i| format!("{i},{}\n", i * 2)).collect();
    std::fs::write(data.join("load_local_data.txt"), rows)?;
    Ok(dir)
}

/// PyMySQL's suite reads its connection settings from `pymysql/tests/databases.json`.
fn run_pymysql(dir: &Path, port: u16) -> Outcome {
    let db = |name: &str, extra: &str| {
        format!(
            r#"{{"host":"127.0.0.1","port":{port},"user":"{APP_USER}","passwd":"{APP_PASSWORD}","db":"{name}"{extra}}}"#
        )
    };
    let json = format!(
        "[{},\n {}]\n",
        db("test1", r#","use_unicode":true,"local_infile":true"#),
        db("test2", "")
    );
    std::fs::write(dir.join("pymysql/tests/databases.json"), json).expect("databases.json");
    let out = conformance::run_bounded(
        Command::new("pytest-3")
            .args(["-v", "-p", "no:cacheprovider", "pymysql/tests"])
            .current_dir(dir),
        SUITE_LIMIT,
    )
    .expect("running PyMySQL's suite");
    let o = Outcome::parse_pytest(&out);
    assert!(
        o.tests.len() > 100,
        "PyMySQL's suite ran only {} tests:\n{out}",
        o.tests.len()
    );
    if !o.failed().is_empty() {
        println!("---- PyMySQL against port {port}:\n{out}");
    }
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pymysql_suite_through_proxy() {
    let _serial = SERIAL.lock().await;
    let dir = tokio::task::spawn_blocking(pymysql_suite)
        .await
        .unwrap()
        .expect("fetching PyMySQL's test suite");
    let cluster = cluster_for_suites().await;
    let mut c = cluster.primary.conn().await.unwrap();
    c.query_drop("CREATE DATABASE test1").await.unwrap();
    c.query_drop("CREATE DATABASE test2").await.unwrap();
    drop(c);
    cluster.wait_replicas_caught_up().await.unwrap();
    let p = proxy::start(&proxy::config_toml(&cluster, &[1, 1], ""))
        .await
        .unwrap();

    let d = dir.clone();
    let primary = cluster.primary.port;
    let direct = tokio::task::spawn_blocking(move || run_pymysql(&d, primary))
        .await
        .unwrap();
    let port = p.addr.port();
    let proxied = tokio::task::spawn_blocking(move || run_pymysql(&dir, port))
        .await
        .unwrap();
    judge("PyMySQL", &direct, &proxied, "pymysql.expected");
}
