//! postrelay's load tools for `scripts/bench`: a load generator that drives
//! many SMTP sessions from one thread ([`send`]), a counting sink that plays
//! the smart host, with optional STARTTLS + AUTH PLAIN ([`sink`]), process
//! accounting ([`procfs`]), statistics ([`stats`]) and the writer of the
//! benchmark page and its charts ([`report`]).
//!
//! Not for tests of correctness (the integration tests in `crates/postrelay`
//! use real peers for that) and not a general SMTP client: it sends the
//! messages it builds itself, to a server on loopback, and counts.

pub mod conn;
pub mod drain;
pub mod error;
pub mod procfs;
pub mod report;
pub mod send;
pub mod sink;
pub mod stats;
pub mod testing;
