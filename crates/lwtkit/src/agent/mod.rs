//! `lwt agent`: apply a config file, then keep it true.
//!
//! One thread waits on three file descriptors ([`watch`]): route, link and
//! address notifications of the namespace, the config file's directory,
//! and SIGHUP/SIGTERM/SIGINT. A notification marks the namespace dirty;
//! once notifications pause for [`DEBOUNCE`] (at most [`MAX_DELAY`] after
//! the first), the agent compares the file with lwtkit's records and the
//! kernel without the lock ([`crate::config::diff_loaded`]) and, only when
//! something differs, applies it ([`crate::config::apply_loaded`]): under
//! the namespace's lock, re-planned there, every change through the
//! transaction layer as `lwt apply` makes it. `--interval` is the fallback
//! full check. [`metrics`] serves what the agent and lwtkit's programs
//! counted.
pub mod metrics;
pub mod watch;

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::{
    config::{self, Action, Plan},
    error::Result,
    system,
};

/// Quiet time after a notification before the check: a burst (a device
/// going away takes its routes along) is checked once.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// The longest a notification waits for its check, however long the burst.
pub const MAX_DELAY: Duration = Duration::from_millis(400);
/// The first retry after a failed check or apply; each next one waits
/// twice as long, up to `--interval`.
pub const RETRY: Duration = Duration::from_secs(1);
/// `--interval`'s default: the fallback full check, in seconds.
pub const DEFAULT_INTERVAL_SECS: f64 = 30.0;

/// What the agent could not set up.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("lwt agent cannot watch {what}: {reason}")]
    Watch {
        what: String,
        reason: std::io::Error,
    },
    #[error("lwt agent cannot serve metrics on {addr}: {reason}")]
    Metrics {
        addr: String,
        reason: std::io::Error,
    },
    #[error("--interval {0} is out of range: seconds > 0")]
    Interval(f64),
}

/// `lwt agent`'s settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub file: PathBuf,
    /// The fallback full check.
    pub interval: Duration,
    /// Remove what lwtkit manages and the file does not name (as `apply --prune`).
    pub prune: bool,
}

impl Options {
    pub fn new(file: PathBuf, interval_secs: f64, prune: bool) -> Result<Self> {
        if !(interval_secs.is_finite() && interval_secs > 0.0) || interval_secs > 1e9 {
            return Err(AgentError::Interval(interval_secs).into());
        }
        Ok(Self {
            file,
            interval: Duration::from_secs_f64(interval_secs),
            prune,
        })
    }
}

/// What the agent counted, shared with the metrics thread.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Changes that put back what was changed outside lwtkit: `repair`
    /// changes, and every change made while the namespace had held the
    /// current file (a route flushed with its device comes back as a
    /// `create`: lwtkit's record of it went with it).
    pub drift_repairs: AtomicU64,
    /// Every change the agent applied, by action (create, update, repair, remove).
    pub changes: [AtomicU64; 4],
    /// Checks or applies that failed (the plan, a change, the lock).
    pub apply_errors: AtomicU64,
    /// Files read again and accepted.
    pub reloads: AtomicU64,
    /// Files read again and refused (the last good one stays).
    pub config_errors: AtomicU64,
    /// Checks run (each compares the file with the namespace).
    pub checks: AtomicU64,
    /// When the namespace last held what the file states (seconds since
    /// the epoch, as f64 bits; 0: never).
    pub applied_at: AtomicU64,
    /// 1 when the last check found the namespace as the file states.
    pub in_sync: AtomicU64,
}

const ACTIONS: [Action; 4] = [
    Action::Create,
    Action::Update,
    Action::Repair,
    Action::Remove,
];

impl AgentStats {
    fn count(&self, action: Action, drift: bool) {
        if let Some(i) = ACTIONS.iter().position(|a| *a == action) {
            self.changes[i].fetch_add(1, Ordering::Relaxed);
        }
        if drift || action == Action::Repair {
            self.drift_repairs.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn mark_applied(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.applied_at.store(now.to_bits(), Ordering::Relaxed);
        self.in_sync.store(1, Ordering::Relaxed);
    }

    /// The changes counted per action, as (action, count).
    pub fn changes_by_action(&self) -> Vec<(String, u64)> {
        ACTIONS
            .iter()
            .zip(&self.changes)
            .map(|(a, n)| (a.to_string(), n.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn applied_at(&self) -> f64 {
        f64::from_bits(self.applied_at.load(Ordering::Relaxed))
    }
}

/// Why a check runs, for the log.
#[derive(Clone, Copy, Debug)]
enum Why {
    Notified,
    Reloaded,
    Interval,
    Retry,
}

struct Agent {
    opts: Options,
    /// The last text that loaded (the one kept when a new one is bad).
    good: String,
    /// The last text read, good or bad: a bad file is logged once.
    seen: String,
    stats: Arc<AgentStats>,
    /// When to try again after a failed check or apply.
    retry: Option<Instant>,
    backoff: Duration,
    /// The namespace has held the good file since it was read: whatever
    /// differs now was changed outside lwtkit.
    settled: bool,
}

/// Runs the agent until SIGTERM or SIGINT: the first apply's failure (a
/// bad file, a change the kernel refuses) is the error; after it, failures
/// are logged and counted, and the agent goes on. `metrics`: a listener
/// (bound by the caller, in the namespace it chooses) to serve /metrics on.
pub fn run(opts: Options, metrics: Option<std::net::TcpListener>) -> Result<()> {
    system::require_attach_privileges("lwt agent")?;
    // Before any thread starts: the ones started later inherit the mask.
    let signals = watch::Signals::block()?;
    let text = read(&opts.file)?;
    let loaded = config::load_text(&opts.file, &text)?;
    // Subscribed before the first apply: nothing between is missed.
    let mut routes = watch::RouteWatch::open()?;
    let files = watch::FileWatch::open(&opts.file)?;
    let stats = Arc::new(AgentStats::default());
    let mut agent = Agent {
        opts,
        good: text.clone(),
        seen: text,
        stats: stats.clone(),
        retry: None,
        backoff: RETRY,
        settled: false,
    };
    let plan = config::apply_loaded(&loaded, agent.opts.prune, "lwt agent")?;
    agent.applied(&plan);
    if let Some(listener) = metrics {
        metrics::serve(listener, stats)?;
    }
    tracing::info!(
        "lwt agent: {} applied ({} change(s)); watching routes, links and addresses, and the file; full check every {:?}",
        agent.opts.file.display(),
        plan.changes.len(),
        agent.opts.interval
    );

    let mut dirty: Option<(Instant, Instant)> = None; // (first, last) notification
    let mut next_tick = Instant::now() + agent.opts.interval;
    loop {
        let now = Instant::now();
        let deadline = match dirty {
            Some((first, last)) => (last + DEBOUNCE).min(first + MAX_DELAY).min(next_tick),
            None => next_tick,
        };
        let deadline = agent.retry.map_or(deadline, |r| r.min(deadline));
        let wait = deadline.saturating_duration_since(now);
        let timeout = PollTimeout::try_from(wait.as_millis().min(i32::MAX as u128) as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(routes.as_fd(), PollFlags::POLLIN),
            PollFd::new(files.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => {
                return Err(AgentError::Watch {
                    what: "its file descriptors".into(),
                    reason: std::io::Error::from_raw_os_error(e as i32),
                }
                .into())
            }
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let (sig, net, file) = (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]));
        if sig {
            for asked in signals.drain() {
                match asked {
                    watch::Asked::Stop(s) => {
                        tracing::info!("lwt agent: {s}: stopping; what was applied stays in place");
                        return Ok(());
                    }
                    watch::Asked::Reload => {
                        tracing::info!("lwt agent: SIGHUP: reading {} again", agent.file());
                        agent.reload(true);
                    }
                }
            }
        }
        if net {
            let seen = routes.drain();
            if seen.any() {
                tracing::debug!(
                    routes = seen.routes,
                    links = seen.links,
                    addresses = seen.addresses,
                    overrun = seen.overrun,
                    "notified"
                );
                let now = Instant::now();
                dirty = Some(dirty.map_or((now, now), |(first, _)| (first, now)));
            }
        }
        if file && files.drain() {
            agent.reload(false);
        }
        let now = Instant::now();
        if let Some((first, last)) = dirty {
            if now >= last + DEBOUNCE || now >= first + MAX_DELAY {
                dirty = None;
                agent.check(Why::Notified);
            }
        }
        if agent.retry.is_some_and(|r| now >= r) {
            agent.check(Why::Retry);
        }
        if now >= next_tick {
            next_tick = now + agent.opts.interval;
            // The file too, in case its directory's events were missed
            // (a file system without inotify, a bind mount replaced).
            if !agent.reload(false) {
                agent.check(Why::Interval);
            }
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        config::ConfigError::Read {
            path: path.into(),
            reason: e.to_string(),
        }
        .into()
    })
}

impl Agent {
    fn file(&self) -> String {
        self.opts.file.display().to_string()
    }

    /// Reads the file again; a new text that loads replaces the good one
    /// and is applied. `force` (SIGHUP): applied even if unchanged.
    /// Returns whether a check ran.
    fn reload(&mut self, force: bool) -> bool {
        let text = match read(&self.opts.file) {
            Ok(t) => t,
            Err(e) => {
                if force || !self.seen.is_empty() {
                    tracing::warn!("lwt agent: {e}; keeping the last good file");
                    self.stats.config_errors.fetch_add(1, Ordering::Relaxed);
                }
                self.seen = String::new();
                return false;
            }
        };
        if text == self.seen && !force {
            return false;
        }
        self.seen = text.clone();
        if text == self.good && !force {
            // Back to the good text after a bad edit: nothing new.
            return false;
        }
        match config::load_text(&self.opts.file, &text) {
            Ok(_) => {
                // SIGHUP on the same text: what differs is still drift.
                self.settled &= text == self.good;
                self.good = text;
                self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!("lwt agent: {} read again", self.file());
                self.check(Why::Reloaded);
                true
            }
            Err(e) => {
                self.stats.config_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "lwt agent: the new file is refused, nothing changed; keeping the last good one: {e}"
                );
                false
            }
        }
    }

    /// Compares the good file with the namespace and applies it if they differ.
    fn check(&mut self, why: Why) {
        self.stats.checks.fetch_add(1, Ordering::Relaxed);
        self.retry = None;
        let interval = self.opts.interval;
        let failed = |agent: &mut Agent, e: &dyn std::fmt::Display| {
            agent.stats.apply_errors.fetch_add(1, Ordering::Relaxed);
            agent.stats.in_sync.store(0, Ordering::Relaxed);
            tracing::warn!("lwt agent: {e}; trying again in {:?}", agent.backoff);
            agent.retry = Some(Instant::now() + agent.backoff);
            agent.backoff = (agent.backoff * 2).min(interval);
        };
        // The good text is checked against the namespace as it is now (a
        // device may have gone, a tunnel's source address changed).
        let loaded = match config::load_text(&self.opts.file, &self.good) {
            Ok(l) => l,
            Err(e) => return failed(self, &e),
        };
        let plan = match config::diff_loaded(&loaded, self.opts.prune) {
            Ok(p) => p,
            Err(e) => return failed(self, &e),
        };
        tracing::debug!(?why, changes = plan.changes.len(), "checked");
        if plan.changes.is_empty() {
            if matches!(why, Why::Reloaded) {
                self.stats.mark_applied();
            }
            self.stats.in_sync.store(1, Ordering::Relaxed);
            self.backoff = RETRY;
            self.settled = true;
            return;
        }
        // Planned again under the lock: a concurrent `lwt` command may
        // have changed the namespace since.
        match config::apply_loaded(&loaded, self.opts.prune, "lwt agent") {
            Ok(plan) => {
                self.backoff = RETRY;
                self.applied(&plan)
            }
            Err(e) => failed(self, &e),
        }
    }

    /// Logs and counts each change of an applied plan.
    fn applied(&mut self, plan: &Plan) {
        for c in &plan.changes {
            self.stats.count(c.action, self.settled);
            tracing::info!(
                "lwt agent: {} {} {}: {}",
                c.action,
                c.kind,
                c.object,
                c.detail.join("; ")
            );
        }
        self.stats.mark_applied();
        self.settled = true;
    }
}
