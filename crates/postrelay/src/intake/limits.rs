//! Connection pools: how many sessions a listener kind may run at once,
//! in total and per client address (IPv6 counted per /64, as the AUTH
//! limiter does). The loopback intake and the submission listeners each
//! have a pool of their own, so clients of the network-facing port can
//! never take the slots local programs need.
//!
//! Not for: deciding a client's cap (the accept loop reads it from the
//! configuration in force) or answering the refused client (`super`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::key;

/// One listener kind's sessions: a fixed number of slots, and a count of
/// the sessions of each client address.
#[derive(Debug)]
pub struct Pool {
    slots: Arc<Semaphore>,
    clients: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection gets no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot of the pool is taken.
    Full,
    /// The client already has `limit` sessions.
    ClientCap { limit: usize },
}

impl Refused {
    /// The limit's name, as the `connections_refused` metric counts it.
    pub fn limit_name(self) -> &'static str {
        match self {
            Refused::Full => "max_connections",
            Refused::ClientCap { .. } => "max_connections_per_client",
        }
    }
}

/// A session's hold on its pool; dropping it frees the slot and the
/// client's share.
#[derive(Debug)]
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    client: Option<(Arc<Pool>, IpAddr)>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some((pool, k)) = self.client.take() {
            pool.release(k);
        }
    }
}

impl Pool {
    /// A pool of `slots` sessions.
    pub fn new(slots: usize) -> Arc<Pool> {
        Arc::new(Pool {
            slots: Arc::new(Semaphore::new(slots)),
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A panic while holding the lock leaves the counts usable.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session for a client at `ip`, which may hold at most `per_client`
    /// sessions (`None`: exempt).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        per_client: Option<usize>,
    ) -> Result<Admission, Refused> {
        let client = match per_client {
            None => None,
            Some(limit) => {
                let k = key(ip);
                let mut clients = self.lock();
                let count = clients.entry(k).or_insert(0);
                if *count >= limit {
                    return Err(Refused::ClientCap { limit });
                }
                *count += 1;
                Some((self.clone(), k))
            }
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            if let Some((_, k)) = client {
                self.release(k);
            }
            return Err(Refused::Full);
        };
        Ok(Admission {
            _slot: slot,
            client,
        })
    }

    fn release(&self, k: IpAddr) {
        let mut clients = self.lock();
        if let Some(count) = clients.get_mut(&k) {
            *count -= 1;
            if *count == 0 {
                clients.remove(&k);
            }
        }
    }

    /// Sessions the client at `ip` holds now (for tests and logs).
    pub fn sessions_of(&self, ip: IpAddr) -> usize {
        self.lock().get(&key(ip)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_cap_and_no_more() {
        let pool = Pool::new(100);
        let held: Vec<_> = (0..3)
            .map(|_| pool.admit(ip("192.0.2.1"), Some(3)).unwrap())
            .collect();
        assert_eq!(
            pool.admit(ip("192.0.2.1"), Some(3)).unwrap_err(),
            Refused::ClientCap { limit: 3 }
        );
        // Another address is not affected; an exempt client neither.
        assert!(pool.admit(ip("192.0.2.2"), Some(3)).is_ok());
        assert!(pool.admit(ip("192.0.2.1"), None).is_ok());
        drop(held);
        assert_eq!(pool.sessions_of(ip("192.0.2.1")), 0);
        assert!(pool.admit(ip("192.0.2.1"), Some(3)).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let pool = Pool::new(100);
        let _a = pool.admit(ip("2001:db8:1:2::1"), Some(2)).unwrap();
        let _b = pool.admit(ip("2001:db8:1:2:ffff::9"), Some(2)).unwrap();
        let refused = pool.admit(ip("2001:db8:1:2::77"), Some(2));
        assert_eq!(refused.unwrap_err(), Refused::ClientCap { limit: 2 });
        assert!(pool.admit(ip("2001:db8:1:3::1"), Some(2)).is_ok());
    }

    #[test]
    fn a_full_pool_refuses_and_keeps_no_share() {
        let pool = Pool::new(1);
        let held = pool.admit(ip("192.0.2.1"), Some(5)).unwrap();
        assert_eq!(
            pool.admit(ip("192.0.2.2"), Some(5)).unwrap_err(),
            Refused::Full
        );
        assert_eq!(pool.sessions_of(ip("192.0.2.2")), 0);
        drop(held);
        assert!(pool.admit(ip("192.0.2.2"), Some(5)).is_ok());
    }
}
