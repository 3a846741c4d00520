//! Atlas's LVS drain through the real binary: SIGUSR2 ("offline") turns the `lvs-ips`
//! directors away before the greeting (their health checks fail), SIGUSR1 ("online") lets
//! them in again; other clients are served throughout. Directors pass `client-ips`.

use rwproxy_sql_tests::process::{wait_for, Spawned};
use rwproxy_sql_tests::sandbox::{free_port, scratch_dir};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What a client connecting from `source` gets first.
#[derive(Debug, PartialEq)]
enum First {
    Greeting,
    Error,
    Closed,
}

fn first_packet(source: &str, port: u16) -> First {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&to.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf).unwrap_or(0) {
        0 => First::Closed,
        // The first packet's first byte: 10 (protocol version) or 0xff.
        n if n > 4 && buf[4] == 10 => First::Greeting,
        n if n > 4 && buf[4] == 0xff => First::Error,
        n => panic!("{n} bytes: {:?}", &buf[..n]),
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signals our own running child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn sigusr2_turns_lvs_directors_away_and_sigusr1_lets_them_in() {
    drain_and_return("127.0.0.1");
}

/// On a dual-stack listener the IPv4 director arrives as `::ffff:127.0.0.1`.
#[test]
fn ipv4_directors_are_turned_away_on_an_ipv6_listener() {
    drain_and_return("[::]");
}

/// Serves on `listen_host` with `127.0.0.1` as the LVS director and `127.0.0.2` as the only
/// client address allowed, and drains the director by signal.
fn drain_and_return(listen_host: &str) {
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let dir = scratch_dir(&format!("lvs-{port}")).unwrap();
    let conf = dir.join("lvs.toml");
    std::fs::write(
        &conf,
        format!(
            "[proxy]\nlisten = \"{listen_host}:{port}\"\nlvs-ips = [\"127.0.0.1\"]\n\
             client-ips = [\"127.0.0.2\"]\n\
             connect-timeout-ms = 200\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[backend]]\naddress = \"127.0.0.1:1\"\nrole = \"rw\"\n"
        ),
    )
    .unwrap();
    let child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_rwproxy"))
            .args(["serve", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("rwproxy to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(first_packet("127.0.0.1", port), First::Greeting, "director");
    assert_eq!(
        first_packet("127.0.0.3", port),
        First::Error,
        "not in client-ips"
    );
    // Online already: changes nothing.
    signal(&child.0, libc::SIGUSR1);
    assert_eq!(first_packet("127.0.0.1", port), First::Greeting);
    signal(&child.0, libc::SIGUSR2);
    assert_eq!(
        first_packet("127.0.0.1", port),
        First::Closed,
        "director still served"
    );
    assert_eq!(
        first_packet("127.0.0.2", port),
        First::Greeting,
        "other clients must be served"
    );
    signal(&child.0, libc::SIGUSR1);
    assert_eq!(first_packet("127.0.0.1", port), First::Greeting);
}
