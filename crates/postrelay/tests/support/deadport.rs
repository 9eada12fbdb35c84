//! A loopback port where nothing listens, held for the test's lifetime:
//! a relay that is down. Not for ports a daemon must bind (those use
//! `daemon::free_port`).
//!
//! The socket is bound but never listens, so connections to it are
//! refused (RST) and no other test can take the port meanwhile; a port
//! that was bound and released could be handed to another listener at
//! any time, and the "dead" relay would answer.

use tokio::net::TcpSocket;

/// A bound, non-listening loopback socket; the port is refused until drop.
pub struct DeadPort {
    _socket: TcpSocket,
    port: u16,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        // What the tests count on: a connection is refused at once.
        let tried = std::net::TcpStream::connect(("127.0.0.1", port));
        assert!(
            matches!(&tried, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "port {port} of a held dead relay did not refuse: {tried:?}"
        );
        DeadPort {
            _socket: socket,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}
