//! `postrelay run`: opens and recovers the spool, binds the listeners and
//! the control socket, then serves until SIGTERM/SIGINT.
//!
//! Signals: SIGHUP re-reads the configuration file (a bad file keeps the
//! running configuration and logs why); SIGTERM/SIGINT stop accepting,
//! answer idle sessions with 421, let commands in progress finish (a
//! message being received is completed and committed, or refused), then
//! exit. A second SIGTERM/SIGINT exits at once, which is still safe: state
//! on disk only changes by atomic renames, so nothing acknowledged is lost.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::intake::{self, Shared};
use crate::maillog::MailLog;
use crate::queue::Queue;
use crate::spool::{Committer, HealthOptions, Spool, SpoolError, SpoolOptions};

/// Where the running configuration came from (re-read on SIGHUP).
#[derive(Debug, Clone)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// The built-in default (nothing to re-read).
    Builtin,
}

/// Runs the daemon in the foreground until it is told to stop.
pub fn run(config: Config, source: Source) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("postrelay")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, source))
}

async fn serve(config: Config, source: Source) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives once we listen must not kill
    // the process with the default action.
    let mut signals = Signals::install()?;
    let options = SpoolOptions {
        health: health_options(&config),
        ..SpoolOptions::default()
    };
    let spool = match Spool::open_with(&config.spool, options) {
        Ok(s) => s,
        Err(SpoolError::Locked { path }) => bail!(
            "another postrelay daemon is running on this spool (it holds the lock {}); stop it first",
            path.display()
        ),
        Err(e) => {
            return Err(e).context(format!("cannot open the spool {}", config.spool.display()));
        }
    };
    let report = spool.recover().context("spool recovery failed")?;
    for (path, why) in &report.corrupt {
        tracing::error!(path = %path.display(), %why, "moved an unreadable queue file to corrupt/");
    }
    let maillog = Arc::new(
        MailLog::open(&config.log, &config.hostname)
            .with_context(|| format!("cannot open the mail log {:?}", config.log.file))?,
    );
    let queue = Queue::load(spool.clone(), maillog.clone()).context("cannot read the queue")?;
    let committer = Committer::start(spool.clone());

    let mut listeners = Vec::new();
    for addr in &config.intake.listen {
        let l = TcpListener::bind(addr).await.with_context(|| {
            let hint = if addr.port() < 1024 && !nix::unistd::geteuid().is_root() {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            } else {
                ""
            };
            format!("cannot listen on {addr}{hint}")
        })?;
        listeners.push(l);
    }
    let control = crate::control::bind(&config.control_socket).with_context(|| {
        format!(
            "cannot create the control socket {}",
            config.control_socket.display()
        )
    })?;

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(config.intake.max_connections));
    let listen = config.intake.listen.clone();
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let shared = Arc::new(Shared {
        config: config_rx,
        spool: spool.clone(),
        committer: committer.clone(),
        queue: queue.clone(),
        maillog,
        shutdown: shutdown.clone(),
    });
    for l in listeners {
        tokio::spawn(intake::serve(
            l,
            shared.clone(),
            slots.clone(),
            tracker.clone(),
        ));
    }
    tokio::spawn(crate::control::serve(
        control,
        queue.clone(),
        shutdown.clone(),
    ));
    let addrs: Vec<String> = listen.iter().map(|a| a.to_string()).collect();
    tracing::info!(
        listen = %addrs.join(", "),
        spool = %spool.root().display(),
        queued = queue.len(),
        "postrelay ready"
    );

    signals.wait_for_stop(&source, &config_tx, &spool).await;
    tracing::info!("stopping: no new connections; finishing commands in progress");
    shutdown.cancel();
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => {}
        _ = signals.term.recv() => tracing::warn!("second stop signal: exiting without waiting for sessions"),
        _ = signals.int.recv() => tracing::warn!("second stop signal: exiting without waiting for sessions"),
    }
    drop(shared);
    committer.shutdown();
    let _ = std::fs::remove_file(&config_tx.borrow().control_socket);
    tracing::info!("stopped");
    Ok(())
}

/// The free-space thresholds the configuration asks of the spool.
fn health_options(config: &Config) -> HealthOptions {
    HealthOptions {
        min_free_bytes: config.queue.min_free_space,
        ..HealthOptions::default()
    }
}

/// The signals the daemon handles, installed once at start.
struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        let make = |kind| signal(kind).context("cannot install signal handlers");
        Ok(Signals {
            hup: make(SignalKind::hangup())?,
            term: make(SignalKind::terminate())?,
            int: make(SignalKind::interrupt())?,
        })
    }

    /// Serves SIGHUP reloads until SIGTERM or SIGINT.
    async fn wait_for_stop(
        &mut self,
        source: &Source,
        config_tx: &watch::Sender<Arc<Config>>,
        spool: &Spool,
    ) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => reload(source, config_tx, spool).await,
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
            }
        }
    }
}

async fn reload(source: &Source, config_tx: &watch::Sender<Arc<Config>>, spool: &Spool) {
    let Source::File(path) = source else {
        tracing::info!("SIGHUP: running on the built-in default configuration; nothing to re-read");
        return;
    };
    let p = path.clone();
    let loaded = tokio::task::spawn_blocking(move || config::load(&p)).await;
    match loaded {
        Ok(Ok(new)) => {
            let old = config_tx.borrow().clone();
            for setting in old.restart_required(&new) {
                tracing::warn!(
                    setting,
                    "changed in the file, but takes effect only after a restart"
                );
            }
            spool.set_health_options(health_options(&new));
            config_tx.send_replace(Arc::new(new));
            tracing::info!(file = %path.display(), "configuration reloaded");
        }
        Ok(Err(e)) => {
            tracing::error!("configuration reload failed, keeping the running configuration: {e}")
        }
        Err(e) => tracing::error!("configuration reload failed: {e}"),
    }
}
