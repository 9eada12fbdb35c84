//! Starting a sink on a thread of its own, for tests that drive it from
//! another runtime (this crate's and the daemon's integration tests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::sink::{Counters, Sink, SinkArgs};

/// Starts a sink on its own thread (it runs until the process ends) and
/// returns its address and counters.
pub fn spawn_sink(args: SinkArgs) -> (SocketAddr, Arc<Counters>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the sink");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let sink = Sink::bind(&args).await.expect("bind the sink");
            let addr = sink.local_addr().expect("the sink's address");
            tx.send((addr, sink.counters()))
                .expect("report the address");
            sink.serve().await
        })
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the sink started")
}

/// Sink arguments for 127.0.0.1 on a free port, logging to `log`.
pub fn sink_args(log: &std::path::Path) -> SinkArgs {
    SinkArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: false,
        user: None,
        password_file: None,
        log: Some(log.to_owned()),
    }
}
