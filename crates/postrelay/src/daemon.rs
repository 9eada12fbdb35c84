//! `postrelay run`: starts the local delivery helper, binds the listeners
//! and the control socket, drops to the daemon user (see
//! [`crate::privsep`]), opens and recovers the spool, then serves until
//! SIGTERM/SIGINT.
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
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config};
use crate::deliver::Deliverer;
use crate::intake::{self, Shared};
use crate::maillog::MailLog;
use crate::net::resolve::Resolver;
use crate::notify::Notifier;
use crate::privsep;
use crate::queue::{Queue, scheduler, worker};
use crate::spool::{HealthOptions, Spool, SpoolError, SpoolOptions};

/// Where the running configuration came from (re-read on SIGHUP).
#[derive(Debug, Clone)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// The built-in default (nothing to re-read).
    Builtin,
}

/// Runs the daemon in the foreground until it is told to stop.
///
/// Everything that needs root happens first, while this process has one
/// thread (see [`crate::privsep`]): the spool is locked, the local
/// delivery helper is started, the sockets are bound (on a single-threaded runtime that is then shut
/// down), the spool is given to the daemon user, and the process switches
/// to that user. Only then does the multi-threaded runtime start.
pub fn run(config: Config, source: Source) -> anyhow::Result<()> {
    let run_as = privsep::plan(&config.daemon, matches!(source, Source::Builtin))?;
    // The spool's lock first: a second daemon on this spool stops here,
    // before it could take a port or replace the control socket.
    let spool = open_spool(&config)?;
    let settings = crate::deliver::engine::local_settings(&config.local);
    let helper = Arc::new(privsep::LocalHelper::spawn(&config.spool, &settings)?);
    let bound = {
        let binder = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime that binds the sockets")?;
        binder.block_on(async { Bound::bind(&config).await?.into_std() })?
    };
    if let privsep::RunAs::User(user) = &run_as {
        let submit = crate::maildrop::submit_socket(&config.spool);
        let mut extra = vec![config.control_socket.as_path(), submit.as_path()];
        extra.extend(config.log.file.as_deref());
        privsep::check_spool_reachable(&config.spool, user)?;
        privsep::prepare_spool(&config.spool, &extra, user)?;
        privsep::switch(user)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("postrelay")
        .build()
        .context("cannot start the async runtime")?;
    let started = Started {
        spool,
        bound,
        helper,
    };
    runtime.block_on(serve(config, source, started))
}

/// What [`run`] prepared before the runtime: the locked spool, the bound
/// sockets and the local delivery helper.
struct Started {
    spool: Spool,
    bound: StdBound,
    helper: Arc<privsep::LocalHelper>,
}

async fn serve(config: Config, source: Source, started: Started) -> anyhow::Result<()> {
    let Started {
        spool,
        bound,
        helper,
    } = started;
    // Handlers first: a signal that arrives once we listen must not kill
    // the process with the default action.
    let mut signals = Signals::install()?;
    let resolver = Arc::new(Resolver::system());
    let deliverer = Deliverer::with_local_helper(&config, helper.clone(), resolver.clone())
        .context("invalid relay settings")?;
    let queue = load_queue(&config, spool, deliverer.router())?;
    // Mail log lines are written several at a time; the stop below
    // writes what is left.
    queue.maillog().start_batching();
    watch_helper(&helper, queue.maillog().metrics().clone());
    let bound = bound.into_tokio()?;
    let running = Running::start(config, bound, queue.clone(), deliverer);
    tracing::info!(
        listen = %running.listen.join(", "),
        spool = %queue.spool().root().display(),
        queued = queue.len(),
        uid = %nix::unistd::getuid(),
        local_helper = helper.pid(),
        "postrelay ready"
    );
    let notifier = Arc::new(Notifier::from_env());
    notifier.ready(&format!(
        "ready; listening on {}",
        running.listen.join(", ")
    ));
    if let Some(interval) = notifier.watchdog_interval() {
        tokio::spawn(keep_watchdog_fed(notifier.clone(), interval));
    }
    let reloadable = Reloadable {
        config: &running.config,
        deliverer: &running.deliverer,
        spool: queue.spool(),
        resolver: &resolver,
        queue: &queue,
        notifier: &notifier,
    };
    signals.wait_for_stop(&source, &reloadable).await;
    notifier.stopping();
    running.stop(&mut signals).await;
    queue.shutdown();
    queue.maillog().stop_batching();
    tracing::info!("stopped");
    Ok(())
}

/// Reports the local delivery helper's death when it happens: the error
/// log names the fix, and `postrelay_local_helper_up` drops to 0.
fn watch_helper(helper: &privsep::LocalHelper, metrics: Arc<crate::metrics::Metrics>) {
    metrics.local_helper_up(true);
    let pid = helper.pid();
    helper.watch(move |status| {
        metrics.local_helper_up(false);
        tracing::error!(
            pid,
            "{}",
            privsep::gone_log(&format!("it exited ({status})"))
        );
    });
}

/// Opens the spool and takes its lock (creating its directories), with
/// the privileges the daemon was started with.
fn open_spool(config: &Config) -> anyhow::Result<Spool> {
    let options = SpoolOptions {
        health: health_options(config),
        sync: match config.queue.sync {
            config::SyncMode::Filesystem => crate::spool::SyncMode::Filesystem,
            config::SyncMode::Files => crate::spool::SyncMode::Files,
            config::SyncMode::Journal => crate::spool::SyncMode::Journal,
        },
        ..SpoolOptions::default()
    };
    match Spool::open_with(&config.spool, options) {
        Ok(s) => Ok(s),
        Err(SpoolError::Locked { path }) => bail!(
            "another postrelay daemon is running on this spool (it holds the lock {}); stop it first",
            path.display()
        ),
        Err(e) => Err(e).context(format!("cannot open the spool {}", config.spool.display())),
    }
}

/// Recovers the spool, opens the mail log, loads the queue and sets up
/// maildrop/ (as the daemon user, before the daemon is ready, so that a
/// `sendmail` right after the start finds it open to the group).
fn load_queue(
    config: &Config,
    spool: Spool,
    router: Arc<crate::route::Router>,
) -> anyhow::Result<Queue> {
    let mut report = spool.recover().context("spool recovery failed")?;
    for (path, why) in &report.corrupt {
        tracing::error!(path = %path.display(), %why, "moved an unreadable queue file to corrupt/");
    }
    let maillog = Arc::new(
        MailLog::open(&config.log, &config.hostname)
            .with_context(|| format!("cannot open the mail log {:?}", config.log.file))?,
    );
    spool.drop_dir().setup();
    let found = std::mem::take(&mut report.found);
    Ok(Queue::load_recovered(spool, found, maillog, router))
}

/// Every socket the daemon serves, bound before anything is started (a
/// port that cannot be had fails the start).
struct Bound {
    intake: Vec<TcpListener>,
    submission: Vec<(TcpListener, intake::submission::Mode)>,
    control: tokio::net::UnixListener,
    /// The control socket's path as bound (a reload may name another,
    /// which applies only at the next start).
    control_path: PathBuf,
    /// The submit socket, unless it could not be made (sendmail then uses
    /// maildrop/).
    submit: Option<tokio::net::UnixListener>,
    /// The Prometheus endpoint (`[metrics] listen`), if configured.
    metrics: Option<TcpListener>,
}

/// [`Bound`] between the runtime that bound it and the one that serves
/// it (a listener belongs to the runtime that made it).
struct StdBound {
    intake: Vec<std::net::TcpListener>,
    submission: Vec<(std::net::TcpListener, intake::submission::Mode)>,
    control: std::os::unix::net::UnixListener,
    control_path: PathBuf,
    submit: Option<std::os::unix::net::UnixListener>,
    metrics: Option<std::net::TcpListener>,
}

impl StdBound {
    /// Registers the sockets with the current runtime.
    fn into_tokio(self) -> anyhow::Result<Bound> {
        let tcp = |l| TcpListener::from_std(l).context("cannot register a listener");
        Ok(Bound {
            intake: self.intake.into_iter().map(tcp).collect::<Result<_, _>>()?,
            submission: self
                .submission
                .into_iter()
                .map(|(l, m)| tcp(l).map(|l| (l, m)))
                .collect::<Result<_, _>>()?,
            control: tokio::net::UnixListener::from_std(self.control)
                .context("cannot register the control socket")?,
            control_path: self.control_path,
            submit: self
                .submit
                .map(tokio::net::UnixListener::from_std)
                .transpose()
                .context("cannot register the submit socket")?,
            metrics: self.metrics.map(tcp).transpose()?,
        })
    }
}

impl Bound {
    /// Detaches the sockets from the runtime that bound them.
    fn into_std(self) -> anyhow::Result<StdBound> {
        let std = |l: TcpListener| l.into_std().context("cannot detach a listener");
        Ok(StdBound {
            intake: self.intake.into_iter().map(std).collect::<Result<_, _>>()?,
            submission: self
                .submission
                .into_iter()
                .map(|(l, m)| std(l).map(|l| (l, m)))
                .collect::<Result<_, _>>()?,
            control: self
                .control
                .into_std()
                .context("cannot detach the control socket")?,
            control_path: self.control_path,
            submit: self
                .submit
                .map(|l| l.into_std())
                .transpose()
                .context("cannot detach the submit socket")?,
            metrics: self.metrics.map(std).transpose()?,
        })
    }

    async fn bind(config: &Config) -> anyhow::Result<Bound> {
        let mut intake = Vec::new();
        for addr in &config.intake.listen {
            let l = TcpListener::bind(addr).await.with_context(|| {
                let hint = if addr.port() < 1024 && !nix::unistd::geteuid().is_root() {
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                } else {
                    ""
                };
                format!("cannot listen on {addr}{hint}")
            })?;
            intake.push(l);
        }
        let submission = intake::submission::bind(config).await?;
        let control_path = config.control_socket.clone();
        let control = crate::control::bind(&control_path).with_context(|| {
            format!(
                "cannot create the control socket {}",
                control_path.display()
            )
        })?;
        let submit_path = crate::maildrop::submit_socket(&config.spool);
        let submit = intake::submit_socket::bind(&submit_path)
            .inspect_err(|e| {
                tracing::warn!(socket = %submit_path.display(), error = %e,
                    "cannot create the submit socket; sendmail goes through maildrop/ (slower)");
            })
            .ok();
        let metrics = match config.metrics.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?,
            ),
            None => None,
        };
        Ok(Bound {
            intake,
            submission,
            control,
            control_path,
            submit,
            metrics,
        })
    }
}

/// The daemon's tasks once started, and what stopping them needs.
struct Running {
    config: watch::Sender<Arc<Config>>,
    deliverer: watch::Sender<Arc<Deliverer>>,
    /// Cancelled to stop accepting and scheduling.
    shutdown: CancellationToken,
    /// Sessions and pickup: waited for at stop.
    sessions: TaskTracker,
    /// Delivery attempts: waited for at most [`DELIVERY_GRACE`].
    deliveries: TaskTracker,
    scheduler: tokio::task::JoinHandle<()>,
    control_path: PathBuf,
    /// The intake addresses, for the ready line.
    listen: Vec<String>,
}

impl Running {
    /// Starts the listeners, pickup, the control socket and the scheduler.
    fn start(config: Config, bound: Bound, queue: Queue, deliverer: Arc<Deliverer>) -> Running {
        let shutdown = CancellationToken::new();
        let sessions = TaskTracker::new();
        // Separate pools: the network-facing submission listeners can never
        // take the slots of local programs on the loopback intake.
        let intake_pool = intake::limits::Pool::new(config.intake.max_connections);
        let submission_pool = intake::limits::Pool::new(
            config
                .intake
                .submission
                .as_ref()
                .map_or(1, |s| s.max_connections),
        );
        let listen = config.intake.listen.iter().map(|a| a.to_string()).collect();
        let max_workers = config.delivery.max_workers;
        let (config_tx, config_rx) = watch::channel(Arc::new(config));
        let (deliverer_tx, deliverer_rx) = watch::channel(deliverer);
        let shared = Arc::new(Shared {
            config: config_rx.clone(),
            queue: queue.clone(),
            maillog: queue.maillog().clone(),
            shutdown: shutdown.clone(),
        });
        for l in bound.intake {
            tokio::spawn(intake::serve(
                l,
                shared.clone(),
                intake_pool.clone(),
                sessions.clone(),
            ));
        }
        let submission = intake::submission::Service::new();
        for (l, mode) in bound.submission {
            tokio::spawn(intake::submission::serve(
                l,
                mode,
                shared.clone(),
                submission.clone(),
                submission_pool.clone(),
                sessions.clone(),
            ));
        }
        // Local submissions (sendmail → maildrop/); tracked so that a stop
        // waits for a file being queued.
        if let Some(l) = bound.submit {
            tokio::spawn(intake::submit_socket::serve(
                l,
                shared.clone(),
                sessions.clone(),
            ));
        }
        sessions.spawn(intake::pickup::run(shared, shutdown.clone()));
        tokio::spawn(crate::control::serve(
            bound.control,
            queue.clone(),
            shutdown.clone(),
        ));
        if let Some(l) = bound.metrics {
            tokio::spawn(crate::metrics::http::serve(
                l,
                queue.maillog().metrics().clone(),
                queue.clone(),
                deliverer_rx.clone(),
                shutdown.clone(),
            ));
        }
        let deliveries = TaskTracker::new();
        let worker_ctx = Arc::new(worker::Context {
            queue: queue.clone(),
            config: config_rx,
            deliverer: deliverer_rx,
        });
        let scheduler = tokio::spawn(scheduler::run(
            queue,
            worker_ctx,
            max_workers,
            shutdown.clone(),
            deliveries.clone(),
        ));
        Running {
            config: config_tx,
            deliverer: deliverer_tx,
            shutdown,
            sessions,
            deliveries,
            scheduler,
            control_path: bound.control_path,
            listen,
        }
    }

    /// Stops accepting, lets commands in progress finish and gives
    /// deliveries in progress [`DELIVERY_GRACE`]; a second stop signal
    /// ends the waiting at once.
    async fn stop(self, signals: &mut Signals) {
        tracing::info!("stopping: no new connections; finishing commands in progress");
        self.shutdown.cancel();
        self.sessions.close();
        // A second stop signal, at any point from here, ends the waiting.
        let forced = async {
            tokio::select! {
                _ = signals.term.recv() => {}
                _ = signals.int.recv() => {}
            }
            tracing::warn!("second stop signal: exiting without waiting any longer");
        };
        // Deliveries in progress get a bounded time to finish; one abandoned
        // changes nothing on disk and is repeated after the restart.
        let drained = async {
            self.sessions.wait().await;
            let _ = self.scheduler.await;
            self.deliveries.close();
            if tokio::time::timeout(DELIVERY_GRACE, self.deliveries.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "abandoning delivery attempts still running; they will be repeated after restart"
                );
            }
        };
        tokio::select! {
            _ = drained => {}
            _ = forced => {}
        }
        self.deliverer.borrow().close_idle();
        let _ = std::fs::remove_file(&self.control_path);
    }
}

/// The free-space thresholds the configuration asks of the spool.
pub(crate) fn health_options(config: &Config) -> HealthOptions {
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
    async fn wait_for_stop(&mut self, source: &Source, r: &Reloadable<'_>) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    r.notifier.reloading();
                    reload(source, r).await;
                    r.notifier.ready("ready; configuration reloaded (see the log)");
                }
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
            }
        }
    }
}

/// What SIGHUP replaces.
struct Reloadable<'a> {
    config: &'a watch::Sender<Arc<Config>>,
    deliverer: &'a watch::Sender<Arc<Deliverer>>,
    spool: &'a Spool,
    resolver: &'a Arc<Resolver>,
    queue: &'a Queue,
    notifier: &'a Notifier,
}

/// Sends systemd's watchdog keep-alive at half the interval it asks for,
/// from a task on the runtime: a stalled runtime stops the pings, and
/// systemd restarts the daemon.
async fn keep_watchdog_fed(notifier: Arc<Notifier>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        notifier.watchdog();
    }
}

/// How long a stopping daemon waits for delivery attempts in progress.
const DELIVERY_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Re-reads the configuration file. Everything is validated (including the
/// relays' CA files) before anything is replaced: a bad file keeps the
/// running configuration whole.
async fn reload(source: &Source, r: &Reloadable<'_>) {
    let Source::File(path) = source else {
        tracing::info!("SIGHUP: running on the built-in default configuration; nothing to re-read");
        return;
    };
    let p = path.clone();
    let loaded = match tokio::task::spawn_blocking(move || config::load(&p)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::error!("configuration reload failed, keeping the running configuration: {e}");
            return;
        }
        Err(e) => {
            tracing::error!("configuration reload failed: {e}");
            return;
        }
    };
    let previous = r.deliverer.borrow().clone();
    let engine = match Deliverer::new(&loaded, Some(&previous), r.resolver.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("configuration reload failed, keeping the running configuration: {e}");
            return;
        }
    };
    let old = r.config.borrow().clone();
    for setting in old.restart_required(&loaded) {
        tracing::warn!(
            setting,
            "changed in the file, but takes effect only after a restart"
        );
    }
    r.spool.set_health_options(health_options(&loaded));
    r.config.send_replace(Arc::new(loaded));
    r.queue.set_router(engine.router());
    r.deliverer.send_replace(engine);
    // delivery.enabled may have changed: let the scheduler look again.
    r.queue.wake();
    // Connections of the old engine carry the old credentials: close them.
    previous.close_idle();
    tracing::info!(file = %path.display(), "configuration reloaded");
}
