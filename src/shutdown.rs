//! Graceful shutdown: SIGTERM or SIGINT asks running work to finish the chunk in
//! flight and stop; a second signal exits at once (pending batches are settled by
//! the next run). SIGHUP never kills: the daemon reloads its job files
//! ([`Hangups`]), a one-shot command logs it and goes on ([`ignore_hangups`]).

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown was requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Listens for SIGTERM and SIGINT (Ctrl-C) in the background.
    pub fn on_signals(&self) {
        self.on_signals_then(|| {});
    }

    /// [`Shutdown::on_signals`], running `before_exit` when a second signal
    /// exits at once: what must outlive the process and is quick to save
    /// (when the vendor calls left, for the next run's pace).
    pub fn on_signals_then(&self, before_exit: impl FnOnce() + Send + 'static) {
        let this = self.clone();
        let mut before_exit = Some(before_exit);
        tokio::spawn(async move {
            let mut first = true;
            loop {
                wait_for_signal().await;
                if !first {
                    tracing::warn!("second shutdown signal: exiting now; the next run settles what was in flight");
                    if let Some(f) = before_exit.take() {
                        f();
                    }
                    std::process::exit(130);
                }
                first = false;
                tracing::info!("shutdown requested: finishing the work in flight (signal again to exit at once)");
                this.trigger();
            }
        });
    }
}

/// SIGHUPs, as a stream; listening replaces the default action (exit).
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    pub fn listen() -> Hangups {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = signal(SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// Resolves at the next SIGHUP; never, where there are none.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

/// A one-shot command: SIGHUP (a closed terminal, a `kill -HUP`) is logged and
/// the run goes on.
pub fn ignore_hangups() {
    let mut hangups = Hangups::listen();
    tokio::spawn(async move {
        loop {
            hangups.recv().await;
            tracing::info!("SIGHUP ignored: a one-shot run reads its job files once; the daemon reloads them on SIGHUP");
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
