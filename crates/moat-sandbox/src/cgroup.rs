//! The per-session cgroups: created before the init runs, removed when the session ends.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::error::SandboxError;
use crate::probe::{CgroupVersion, Controller};
use crate::spec::Limits;

/// The sandbox's own process, its init (pid 1), counts against `pids`.
const INIT_PROCESSES: u64 = 1;
/// The cpu bandwidth period, in microseconds.
const CPU_PERIOD_MICROS: u64 = 100_000;
/// How long the removal waits for the killed processes to leave the group.
const REMOVE_ATTEMPTS: u32 = 100;
const REMOVE_PAUSE: Duration = Duration::from_millis(10);

static SESSION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One group per hierarchy used; removed (after killing stragglers) on drop.
#[derive(Debug)]
pub(crate) struct SessionCgroup {
    groups: Vec<PathBuf>,
    /// What held, e.g. `memory limit (cgroup v1)`.
    pub(crate) enforced: Vec<String>,
}

impl SessionCgroup {
    /// Creates the groups for the requested limits; `missing` receives the controllers that
    /// cannot hold (the caller decides whether that refuses). Probes the host's cgroups
    /// ([`cgroup_support`](crate::cgroup_support)) only when a limit is requested.
    pub(crate) fn create(
        limits: &Limits,
        missing: &mut Vec<Controller>,
    ) -> Result<Self, SandboxError> {
        let mut session = SessionCgroup {
            groups: Vec::new(),
            enforced: Vec::new(),
        };
        if !limits.wants_cgroups() {
            return Ok(session);
        }
        let support = crate::host::cgroup_support();
        let name = format!(
            "moat-{}-{}",
            std::process::id(),
            SESSION_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        for controller in Controller::ALL.into_iter().filter(|&c| limits.wants(c)) {
            let Some(placement) = support.placement(controller) else {
                missing.push(controller);
                continue;
            };
            let group = placement.parent.join(&name);
            if !session.groups.contains(&group) {
                fs::create_dir(&group).map_err(|source| SandboxError::Cgroup {
                    path: group.clone(),
                    source,
                })?;
                session.groups.push(group.clone());
            }
            write_limit(&group, controller, placement.version, limits)?;
            session.enforced.push(controller.held(placement.version));
        }
        Ok(session)
    }

    /// Whether the session has no group (no limit asked for one): nothing to remove.
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Moves a process into every group of the session.
    pub(crate) fn add(&self, pid: u32) -> Result<(), SandboxError> {
        for group in &self.groups {
            write(&group.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    fs::write(path, value).map_err(|source| SandboxError::Cgroup {
        path: path.to_owned(),
        source,
    })
}

fn write_limit(
    group: &Path,
    controller: Controller,
    version: CgroupVersion,
    limits: &Limits,
) -> Result<(), SandboxError> {
    match (controller, version) {
        (Controller::Memory, CgroupVersion::V2) => {
            let Some(bytes) = limits.memory else {
                return Ok(());
            };
            write(&group.join("memory.max"), &bytes.to_string())?;
            let swap = group.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        (Controller::Memory, CgroupVersion::V1) => {
            let Some(bytes) = limits.memory else {
                return Ok(());
            };
            write(&group.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // Memory plus swap: without it the agent could spill into swap past the limit.
            let memsw = group.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string())?;
            }
        }
        (Controller::Pids, CgroupVersion::V2 | CgroupVersion::V1) => {
            let Some(pids) = limits.pids else {
                return Ok(());
            };
            write(
                &group.join("pids.max"),
                &(pids + INIT_PROCESSES).to_string(),
            )?;
        }
        (Controller::Cpu, version) => {
            let Some(cpus) = limits.cpus else {
                return Ok(());
            };
            let quota = cpu_quota_micros(cpus);
            match version {
                CgroupVersion::V2 => write(
                    &group.join("cpu.max"),
                    &format!("{quota} {CPU_PERIOD_MICROS}"),
                )?,
                CgroupVersion::V1 => {
                    write(
                        &group.join("cpu.cfs_period_us"),
                        &CPU_PERIOD_MICROS.to_string(),
                    )?;
                    write(&group.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
    }
    Ok(())
}

/// The quota for `cpus` cores per period; at least 1 ms, the kernel's minimum.
fn cpu_quota_micros(cpus: f64) -> u64 {
    let quota = (cpus * CPU_PERIOD_MICROS as f64).round();
    if quota.is_finite() && quota > 1000.0 {
        quota as u64
    } else {
        1000
    }
}

impl Drop for SessionCgroup {
    fn drop(&mut self) {
        for group in &self.groups {
            for _ in 0..REMOVE_ATTEMPTS {
                kill_members(group);
                match fs::remove_dir(group) {
                    Ok(()) => break,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => break,
                    Err(_) => thread::sleep(REMOVE_PAUSE),
                }
            }
        }
    }
}

fn kill_members(group: &Path) {
    let members = fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
    for pid in members
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_quota_scales_with_cores_and_has_a_floor() {
        assert_eq!(cpu_quota_micros(1.5), 150_000);
        assert_eq!(cpu_quota_micros(0.0), 1000);
        assert_eq!(cpu_quota_micros(f64::NAN), 1000);
    }
}
