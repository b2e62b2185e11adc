//! The supervisor: the long-lived process that starts `current/outpost`, runs the
//! [`guard`](crate::guard) before every start, and starts the server again when it
//! exits for an update (exit code [`EXIT_RESTART`]) or fails. Where systemd runs the
//! service, systemd restarts it and runs the guard as `ExecStartPre`; the supervisor
//! is for units without it (and for the tests). It is a separate, small binary so a
//! release that cannot even start is still rolled back.

use std::ffi::OsString;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::error::UpdateError;
use crate::guard::{Decision, Policy, before_start};
use crate::layout::Layout;
use crate::manifest::BINARY;
use crate::state::UpdateState;

/// The exit code with which the server asks to be started again (it switched to a
/// new release): `EX_TEMPFAIL`.
pub const EXIT_RESTART: i32 = 75;

/// The environment variable that tells the server where its releases directory is.
pub const ENV_RELEASES: &str = "OUTPOST_RELEASES";

/// Set (to `1`) for a server this supervisor started: it then stops when the
/// supervisor goes. systemd sets only [`ENV_RELEASES`].
pub const ENV_SUPERVISED: &str = "OUTPOST_SUPERVISED";

/// How the supervisor restarts a server that failed outside an update.
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// Pause before a restart.
    pub delay: Duration,
    /// Failures within `window` before the supervisor gives up.
    pub burst: u32,
    /// The window.
    pub window: Duration,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            delay: Duration::from_secs(1),
            burst: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Runs the server (`current/outpost ARGS`) until it stops cleanly (exit 0), or fails
/// `restart.burst` times within `restart.window` outside an update. Returns its last
/// exit code.
pub fn run(
    layout: &Layout,
    policy: &Policy,
    restart: &Restart,
    args: &[OsString],
    env: &[(&str, &str)],
) -> Result<i32, UpdateError> {
    let mut failures: Vec<Instant> = Vec::new();
    loop {
        let decision = before_start(layout, policy, crate::unix_now())?;
        let on_probation = matches!(decision, Decision::Probation { .. });
        match &decision {
            Decision::RolledBack {
                failed,
                back,
                reason,
            } => eprintln!("outpost-supervisor: rolled back {failed} to {back}: {reason}"),
            Decision::Probation { to, start } => {
                eprintln!("outpost-supervisor: starting {to} on probation (start {start})")
            }
            Decision::Start(_) => {}
        }
        let bin = layout.root().join("current").join(BINARY);
        let status = run_once(
            layout,
            &bin,
            args,
            env,
            on_probation.then_some(policy.gate_timeout),
        );
        let code = match status {
            Ok(s) if s.success() => return Ok(0),
            Ok(s) => s.code().unwrap_or(128),
            Err(e) => {
                eprintln!("outpost-supervisor: cannot start {}: {e}", bin.display());
                127
            }
        };
        if code == EXIT_RESTART {
            continue;
        }
        let pending = UpdateState::load(&layout.state_path())?.pending.is_some();
        if pending {
            // The guard counts this start; no pause, the rollback should be quick.
            continue;
        }
        let now = Instant::now();
        failures.retain(|t| now.duration_since(*t) < restart.window);
        failures.push(now);
        if failures.len() as u32 >= restart.burst {
            eprintln!(
                "outpost-supervisor: the server failed {} times within {} s; giving up (exit {code})",
                failures.len(),
                restart.window.as_secs()
            );
            return Ok(code);
        }
        std::thread::sleep(restart.delay);
    }
}

/// Starts the server once and waits; a release on probation that runs past its gate
/// deadline without passing is stopped (the guard then rolls it back).
fn run_once(
    layout: &Layout,
    bin: &std::path::Path,
    args: &[OsString],
    env: &[(&str, &str)],
    gate_deadline: Option<Duration>,
) -> std::io::Result<ExitStatus> {
    let mut child = Command::new(bin)
        .args(args)
        .env(ENV_RELEASES, layout.root())
        .env(ENV_SUPERVISED, "1")
        .envs(env.iter().copied())
        .spawn()?;
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if let Some(limit) = gate_deadline
            && started.elapsed() > limit
        {
            let still = UpdateState::load(&layout.state_path())
                .map(|s| s.pending.is_some())
                .unwrap_or(false);
            if still {
                eprintln!(
                    "outpost-supervisor: no health gate within {} s; stopping the release",
                    limit.as_secs()
                );
                child.kill()?;
                return child.wait();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
