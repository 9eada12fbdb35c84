//! The SMTP wire protocol for postrelay, without I/O: commands, replies,
//! addresses, line and DATA framing, EHLO capabilities, SASL messages and the
//! server's command-order state machine.
//!
//! Everything here works on byte slices and owned values handed in by the
//! caller; sockets, TLS, timeouts and policy live in the `postrelay` daemon.
//! Both sides are covered: the server side parses what a client sends
//! ([`Command::parse`], [`line::next_line`], [`DataReceiver`]) and the client
//! side encodes commands and parses replies ([`Command::encode`],
//! [`reply::parse_reply`], [`DotStuffer`]).
//!
//! Parsers never panic on any input; the fuzz targets in `fuzz/` and the
//! property tests check this together with round trips.

pub mod address;
pub mod command;
pub mod data;
pub mod ehlo;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod line;
pub mod reply;
pub mod sasl;
pub mod server;

pub use address::{AddressError, ForwardPath, Mailbox, ReversePath};
pub use command::{Body, Command, CommandError, MailParams, Notify, RcptParams, Ret};
pub use data::{DataProgress, DataReceiver, DataViolation, DotStuffer};
pub use ehlo::Capabilities;
pub use line::{Line, next_line};
pub use reply::{EnhancedCode, Reply, ReplyError, parse_reply};
pub use sasl::SaslError;
pub use server::{Phase, ServerState};
