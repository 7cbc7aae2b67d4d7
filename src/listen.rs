//! TCP listeners with an accept queue deep enough for bursts of new connections.
//!
//! `TcpListener::bind` asks the kernel for a backlog of 128. When a thousand clients
//! connect at once (a load balancer's pool warming up, a load test starting), the queue
//! overflows, the kernel drops the surplus SYNs and those clients retry only after a
//! second: a one-second stall that shows up as lost throughput and a long latency tail.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs, lookup_host};

/// Connections that may wait to be accepted; the kernel caps it at `net.core.somaxconn`.
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Binds the first address `addr` resolves to that can be bound, with [`ACCEPT_BACKLOG`].
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in lookup_host(addr).await? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As std and tokio do: a restarted server can bind while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_an_ephemeral_port_and_accepts() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        assert_eq!(client.unwrap().local_addr().unwrap(), accepted.unwrap().1);
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error() {
        let taken = bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(bind(addr).await.is_err());
    }
}
