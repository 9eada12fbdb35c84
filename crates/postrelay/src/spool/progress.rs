//! Recording a delivery attempt's progress: recipients delivered while
//! the attempt goes on (see `queue::progress`), so that a crash before the
//! attempt ends does not deliver them again.
//!
//! Its replacement step is shared with [`Spool::rewrite_envelope_in_place`],
//! which adds the directory `fsync` the end of an attempt needs.
//!
//! Not for: the attempt's final result (the envelope rewrite or the lazy
//! removal in `mod.rs`), nor any change that must survive a power loss to
//! keep a promise: what this writes only saves a repeated delivery.

use std::path::Path;

use super::durable::{remove_quietly, temp_name, write_synced};
use super::{Envelope, Location, Spool, SpoolError};

impl Spool {
    /// Replaces the envelope of a message being delivered with `env`
    /// (recipients marked delivered), wherever it is (queue/ or hold/),
    /// and says where; `NotFound` if the message is gone, which is then
    /// not brought back.
    ///
    /// [`Spool::rewrite_envelope_in_place`] without its directory
    /// `fsync`: the new envelope is written to tmp/ and `fdatasync`ed
    /// before the spool's lock is taken, and under the lock it is only
    /// renamed over the old one. The rename becomes durable with the next
    /// `fsync` of its directory (for queue/, the committer's, one per
    /// batch of incoming mail) or the file system's own write-back.
    /// A kill -9 after the rename keeps the new envelope; a power loss
    /// before that `fsync` may bring back the old one, whose recipients
    /// are then delivered again: a duplicate, never a loss, and never a
    /// half-written envelope (its content was durable before the rename).
    /// A crash before the rename leaves a file in tmp/, which recovery
    /// removes. Blocking.
    pub fn record_progress(&self, env: &Envelope) -> Result<Location, SpoolError> {
        self.replace_envelope(env)
    }

    /// Writes `env` to tmp/ and `fdatasync`s it outside the spool's lock,
    /// then renames it over the message's envelope under the lock (the
    /// caller `fsync`s the directory if it must). `NotFound`, with nothing
    /// left in tmp/, if the message is gone.
    pub(super) fn replace_envelope(&self, env: &Envelope) -> Result<Location, SpoolError> {
        let layout = &self.inner.layout;
        let ops = &*self.inner.ops;
        let name = env.id.envelope_name();
        let tmp = temp_name(&layout.tmp, Path::new(&name));
        write_synced(ops, &tmp, &env.to_json())?;
        let _admin = self.admin();
        let loc = match self.locate(&env.id) {
            Ok(Some(loc)) => loc,
            Ok(None) => {
                remove_quietly(ops, &tmp);
                return Err(SpoolError::NotFound { id: env.id });
            }
            Err(e) => {
                remove_quietly(ops, &tmp);
                return Err(e);
            }
        };
        let path = layout.envelope_path(&env.id, loc);
        if let Err(e) = ops.rename(&tmp, &path) {
            remove_quietly(ops, &tmp);
            return Err(SpoolError::io("rename", path, e));
        }
        Ok(loc)
    }
}
