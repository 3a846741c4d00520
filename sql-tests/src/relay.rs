//! A TCP relay whose target can be changed: to the proxy, an address that now reaches
//! another server, as a VIP, a DNS name or a load balancer does after a failover. Connections
//! opened before a change stay with the old server, as they do while a VIP's old node still
//! answers them.

use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    /// `127.0.0.1:port`, where it listens.
    pub address: String,
    target: Arc<Mutex<String>>,
    accepting: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and relays each connection to `target`.
    pub async fn start(target: &str) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let target = Arc::new(Mutex::new(target.to_string()));
        let to = target.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let dest = to.lock().expect("relay target").clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(dest).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Relay {
            address,
            target,
            accepting,
        })
    }

    /// New connections go to `target` from now on.
    pub fn point_to(&self, target: &str) {
        *self.target.lock().expect("relay target") = target.to_string();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
