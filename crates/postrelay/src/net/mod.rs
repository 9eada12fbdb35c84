//! Network plumbing: the buffered connection that every protocol loop reads
//! from and writes to. Protocol decisions live elsewhere (`postrelay_smtp`,
//! `intake`); this module only moves bytes, with deadlines.

pub mod cert;
pub mod conn;
pub mod resolve;
pub mod stream;
pub mod tls;
pub mod tls_server;

pub use conn::{Conn, ConnError};
