//! Delivery: one attempt for a queued message, ending in an outcome per
//! recipient. It never changes the queue itself; the queue's worker applies
//! the outcomes.
//!
//! - `outcome`: the outcome and reason types, and the one place that
//!   decides whether a failure is permanent;
//! - `client`: the SMTP client conversation with a relay (TLS, AUTH,
//!   pipelining, per-phase timeouts);
//! - `pool`: idle connections reused across messages;
//! - `engine`: routing, relay failover, local delivery, the attempt as a
//!   whole;
//! - `attempt`: the record of one attempt (outcomes, relays, transcript,
//!   timings);
//! - `local`: delivery into local mailboxes (Maildir or mbox).

pub mod attempt;
pub mod client;
pub mod engine;
pub mod local;
pub mod outcome;
pub mod pool;

pub use attempt::{Attempt, NoProgress, Progress, SessionFacts};
pub use engine::{Deliverer, EngineError};
pub use outcome::{Outcome, Phase, Reason};
