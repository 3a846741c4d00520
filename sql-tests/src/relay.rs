//! A TCP relay whose target can be changed: to the proxy, an address that now reaches
//! another server, as a VIP, a DNS name or a load balancer does after a failover. Connections
//! opened before a change stay with the old server, as they do while a VIP's old node still
//! answers them. It can also stand for a server that refuses every new connection.

use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    /// `127.0.0.1:port`, where it listens.
    pub address: String,
    target: Arc<Mutex<Target>>,
    accepting: JoinHandle<()>,
}

#[derive(Clone)]
enum Target {
    Server(String),
    /// These bytes, then the connection closes.
    Answer(Vec<u8>),
}

impl Relay {
    /// Listens on a free loopback port and relays each connection to `target`.
    pub async fn start(target: &str) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let target = Arc::new(Mutex::new(Target::Server(target.to_string())));
        let to = target.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let dest = to.lock().expect("relay target").clone();
                tokio::spawn(async move {
                    match dest {
                        Target::Server(addr) => {
                            if let Ok(mut server) = TcpStream::connect(addr).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                        Target::Answer(bytes) => {
                            let _ = client.write_all(&bytes).await;
                        }
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
        *self.target.lock().expect("relay target") = Target::Server(target.to_string());
    }

    /// New connections get the error a server greets with when it takes no more
    /// connections (`code`, as 1040), and are closed.
    pub fn refuse(&self, code: u16, message: &str) {
        let mut payload = vec![0xff];
        payload.extend_from_slice(&code.to_le_bytes());
        payload.extend_from_slice(message.as_bytes());
        let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        packet.push(0);
        packet.extend_from_slice(&payload);
        *self.target.lock().expect("relay target") = Target::Answer(packet);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
