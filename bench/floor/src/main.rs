//! The floor under rwproxy's CPU cost per query: a TCP forwarder with rwproxy's threading
//! model (two event threads, each a current-thread tokio runtime serving its connections'
//! both sockets) that does nothing per statement. It reads no packets and routes nothing: each
//! client gets a backend from a round-robin over the given addresses at connect time, as
//! HAProxy's `haproxy-ro` target does, and bytes are copied both ways.
//!
//! Whatever rwproxy costs above this is its statement handling (framing, classification,
//! routing, pooling, statistics, reply scanning); whatever this costs is the runtime, the
//! kernel and the machine. bench/RESULTS.md ("The floor") has the measurements.
//!
//! ```sh
//! cargo build --release --manifest-path bench/floor/Cargo.toml
//! bench/floor/target/release/rwproxy-floor 127.0.0.1:5401 127.0.0.1:REPLICA1 127.0.0.1:REPLICA2
//! ```

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

const EVENT_THREADS: usize = 2;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: rwproxy-floor LISTEN BACKEND...";
    let listen: SocketAddr = args.next().expect(usage).parse().expect(usage);
    let backends: Vec<SocketAddr> = args.map(|a| a.parse().expect(usage)).collect();
    assert!(!backends.is_empty(), "{usage}");

    let threads: Vec<tokio::runtime::Handle> = (0..EVENT_THREADS)
        .map(|_| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("event thread runtime");
            let handle = runtime.handle().clone();
            std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
            handle
        })
        .collect();
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("main runtime");
    main.block_on(async {
        let listener = TcpListener::bind(listen).await.expect("listen");
        for n in 0.. {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let Ok(client) = client.into_std() else {
                continue;
            };
            let backend = backends[n % backends.len()];
            threads[n % threads.len()].spawn(async move {
                let Ok(mut client) = TcpStream::from_std(client) else {
                    return;
                };
                let Ok(mut server) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
}
