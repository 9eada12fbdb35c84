//! The local recipient check at RCPT (Postfix's `local_recipient_maps`): a
//! recipient delivered on this host must be an alias or a system user, or
//! it is refused with 550 5.1.1 before anything is queued. Accepting it and
//! bouncing later would send the bounce to whatever sender the client
//! claimed: backscatter, through the customer's relay account.
//!
//! **For:** the decision and its reply. **Not for:** routing (the
//! [`Router`] says which recipients are local and which are aliases) or
//! delivery.
//!
//! The system user is looked up with `getpwnam_r` on the blocking pool,
//! once per RCPT that needs it (a recipient that is not local, or is an
//! alias, needs none). Nothing is cached: the lookup is cheap with
//! `/etc/passwd`, and a directory service (LDAP, sssd) caches on its own
//! and sees new users at once.

use postrelay_smtp::reply::Reply;

use crate::deliver::local;
use crate::route::{LocalRecipient, Router};

/// Checks one accepted-so-far recipient `address` against the local
/// recipient table: `Ok` to accept it, else the reply that refuses it
/// (550 5.1.1 for an unknown user, 451 4.3.0 when the user database
/// cannot be asked). With a `catch_all` user (`[local] catch_all`) every
/// local recipient is accepted: delivery gives the unknown ones to it.
pub async fn check(router: &Router, catch_all: bool, address: &str) -> Result<(), Reply> {
    if catch_all {
        return Ok(());
    }
    let LocalRecipient::User(user) = router.local_recipient(address) else {
        return Ok(());
    };
    let name = user.clone();
    let found = tokio::task::spawn_blocking(move || local::user_exists(&name)).await;
    match found {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(unknown(address)),
        Ok(Err(e)) => {
            tracing::warn!(%user, error = %e.desc(), "cannot look up a local user at RCPT");
            Err(lookup_failed(address))
        }
        Err(e) => {
            tracing::error!(%user, error = %e, "local user lookup task failed");
            Err(lookup_failed(address))
        }
    }
}

/// The refusal of an unknown local recipient, in Postfix's words.
pub fn unknown(address: &str) -> Reply {
    Reply::new(
        550,
        "5.1.1",
        format!("<{address}>: Recipient address rejected: User unknown in local recipient table"),
    )
}

/// The user database could not be asked: the client tries again later.
fn lookup_failed(address: &str) -> Reply {
    Reply::new(
        451,
        "4.3.0",
        format!("<{address}>: Temporary lookup failure, try again later"),
    )
}
