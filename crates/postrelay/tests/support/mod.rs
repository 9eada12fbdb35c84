//! Shared helpers for the integration tests. Each test binary uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod chroot;
pub mod client;
pub mod daemon;
pub mod deadport;
pub mod dialog;
pub mod fakeserver;
pub mod install;
pub mod netns;
pub mod peers;
pub mod pflogsumm;
pub mod provider;
pub mod secrets;
pub mod smtp;
pub mod user;

/// The unit tests' root check, shared (see the file).
#[path = "../../src/test_root.rs"]
pub mod test_root;
