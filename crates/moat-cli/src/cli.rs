//! Command-line definitions (clap). Only shapes and help text live here; the bodies are in
//! `commands/`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// moat: a secure runtime for autonomous AI agents.
///
/// The gate is a verified package registry: every package an agent installs passes a policy
/// built on OSV advisories (known-vulnerable versions, malware, typosquats, too-new releases,
/// denied packages). Loose requests resolve to approved versions; risky ones are refused with a
/// reason the package client prints, so the agent can correct itself.
#[derive(Debug, Parser)]
#[command(name = "moat", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Start here:\n  moat gate --advisories DIR     serve the verified registry on http://127.0.0.1:7070\n  npm config set registry http://127.0.0.1:7070/npm/\n  moat why npm minimist@1.2.5    explain a verdict"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line when it starts with `run` ([`RunCli`]); any other command line
    /// goes to [`Parser::try_parse`].
    pub fn try_parse_run() -> Result<Cli, clap::Error> {
        let RunCli {
            global,
            command: RunOnly::Run(args),
        } = RunCli::try_parse()?;
        Ok(Cli {
            global,
            command: Command::Run(args),
        })
    }
}

/// `moat run …` parsed against a command tree that holds `run` alone: the same arguments, the
/// same help and errors (a test compares them), without building every other subcommand's
/// arguments first. `moat run -- true` started 0.8 to 1.1 ms sooner (interleaved runs, 200
/// each, BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "moat", version, propagate_version = true, max_term_width = 100)]
struct RunCli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: RunOnly,
}

#[derive(Debug, Subcommand)]
enum RunOnly {
    // Its help is `RunArgs`'s, as in `Command`.
    Run(Box<RunArgs>),
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file [default: ./moat.toml when present].
    #[arg(long, global = true, env = "MOAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where moat keeps its state: advisory index, artifact cache, audit log
    /// [default: $XDG_DATA_HOME/moat or ~/.local/share/moat].
    #[arg(long, global = true, env = "MOAT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where the audit log lives: a `postgres://USER@HOST/DB` URL (gates sharing one log; the
    /// signing key stays in DATA_DIR/audit.key, the same on every gate) or a SQLite file
    /// [default: DATA_DIR/audit.db]. Put a URL with a password in MOAT_AUDIT_STORE or
    /// moat.toml `[audit] store`, not on the command line.
    #[arg(
        long,
        global = true,
        env = "MOAT_AUDIT_STORE",
        hide_env_values = true,
        value_name = "URL|FILE"
    )]
    pub audit_store: Option<String>,

    /// How the gate records an answer identical to a decision already on record (same
    /// requester, package, version and verdict): `tally` counts it and appends the counts a
    /// second later, one event per decision; `record` appends every answer in full. Either
    /// way no answer is given before its decision is durably recorded [default: tally].
    #[arg(long, global = true, env = "MOAT_AUDIT_REPEATS", value_name = "MODE")]
    pub audit_repeats: Option<AuditRepeats>,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--audit-repeats` and `[audit] repeats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditRepeats {
    /// Count repeated answers; append the counts a second later (a crash loses at most that
    /// second's counts, never a decision).
    Tally,
    /// Append every answer in full.
    Record,
}

impl From<AuditRepeats> for moat_audit::RepeatMode {
    fn from(repeats: AuditRepeats) -> moat_audit::RepeatMode {
        match repeats {
            AuditRepeats::Tally => moat_audit::RepeatMode::Tally,
            AuditRepeats::Record => moat_audit::RepeatMode::Record,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the verified registry (npm under /npm/, PyPI under /pypi/simple/, cargo under
    /// /crates/index/) and the why endpoint.
    ///
    /// Point npm at it with `npm config set registry http://127.0.0.1:7070/npm/`
    /// (or `--registry` per command). Blocked versions stay listed but deprecated, so ranges
    /// resolve to approved versions; a blocked tarball answers 403 with the reason.
    Gate(GateArgs),

    /// Explain the verdict on a package version: every rule that fired, the advisories, the
    /// approved versions, and how to ask for a waiver.
    ///
    /// Example: `moat why npm minimist@1.2.5`
    Why(WhyArgs),

    /// Manage the advisory database (OSV dumps).
    #[command(subcommand)]
    Db(DbCommand),

    /// Check or print policies.
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// Read the audit log of gate decisions.
    #[command(subcommand)]
    Audit(AuditCommand),

    // Its help is `RunArgs`'s, which `RunCli` shows too.
    Run(Box<RunArgs>),

    /// Answer from the system of record: which agents ran and who operates them, which
    /// packages and versions each consumed, who installed a package, what was blocked and why,
    /// which hosts agents reached.
    ///
    /// The answer comes from tables derived from the audit log (DATA_DIR/record.db), brought
    /// up to date from the log first; `moat audit rebuild` recreates them. Filters combine.
    ///
    /// Examples: `moat report --package lodash` (who installed lodash),
    /// `moat report --agent claude --since 24h`, `moat report --json`
    Report(ReportArgs),

    /// List running agent sessions: id, start, agent, operator, the pid of its `moat run`,
    /// workspace and command.
    Ps {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },

    /// End a running agent session: the agent gets SIGTERM, and the session's --stop-timeout
    /// (10s by default) to exit before its sandbox is killed. Run it again to kill at once.
    Stop {
        /// The session id (from `moat ps`).
        session: String,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only this agent's sessions and what they did.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Only this operator's sessions and what they did.
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,
    /// Only this package, `NAME` or `NAME@VERSION` (e.g. `@types/node@22.0.0`): who
    /// installed it, who was refused it.
    #[arg(long, value_name = "PACKAGE")]
    pub package: Option<String>,
    /// Only what happened since then: an RFC 3339 time or an age (`30m`, `24h`, `7d`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The sandbox backends of `moat run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// Namespaces, Landlock, seccomp and cgroups, set up by moat itself.
    Embedded,
    /// A podman container with the same contract.
    Podman,
}

/// Run an agent session in a sandbox whose only way out is the gate.
///
/// The command sees only the workspace (read-write), /usr, a minimal /etc, a fresh $HOME
/// and /tmp; its network has one address, 127.0.0.1:7070, bridged to a socket the gate
/// serves for this session alone: npm, pip, uv and cargo are configured for it,
/// HTTP(S)_PROXY admits only the hosts in the policy's [egress] allow list, and
/// ANTHROPIC_BASE_URL / OPENAI_BASE_URL reach the LLM APIs with keys the sandbox never sees.
///
/// When a `moat gate` serves the same --data-dir, the session uses it (through
/// DATA_DIR/gate.ctl; the address inside is then the gate's own port): its policy,
/// advisories, upstreams and LLM keys apply, and it records the session. Otherwise a gate
/// is started for the session with the options given here.
///
/// Exits with the agent's status (128+N when signal N ended it); 127 or 126, as a shell, when
/// the command is not found or cannot be executed in the sandbox; 1 when moat itself fails.
///
/// Example: `moat run --agent claude -- claude -p "add a CSV export"`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The directory the agent works in, mounted read-write [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// Who runs the agent, for the audit record [default: the host user].
    #[arg(long, value_name = "NAME")]
    pub operator: Option<String>,

    /// Which agent this is, for the audit record [default: the command's name].
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,

    /// Host paths to show read-only at the same place inside (toolchains outside /usr, e.g.
    /// `--ro /usr/local --ro ~/.cargo`); a symlink is followed, and its target shows at the
    /// target's own path; repeatable.
    #[arg(long = "ro", value_name = "PATH")]
    pub ro_paths: Vec<PathBuf>,

    /// Extra environment for the agent, `NAME=VALUE` (not for secrets: see --secret);
    /// repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,

    /// A secret for the agent, read from the host environment variable NAME or from the file
    /// given as NAME=@PATH, and delivered as one framed line on the agent's stdin
    /// (`MOAT-SECRETS <json>`), never in its environment or files; repeatable.
    #[arg(long = "secret", value_name = "NAME[=@FILE]")]
    pub secrets: Vec<String>,

    /// Memory limit, e.g. `2G`, `512M`.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Most processes and threads the session may have.
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,

    /// CPU limit in cores, e.g. `1.5`.
    #[arg(long, value_name = "CORES")]
    pub cpus: Option<f64>,

    /// End the session after this long: seconds, or a duration like 90s, 30m or 2h. The agent
    /// gets SIGTERM, then --stop-timeout to exit before the sandbox is killed; moat run then
    /// exits 124, as timeout(1) does.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<std::time::Duration>,

    /// How long the agent has to exit on SIGTERM when the session is ended (by --timeout,
    /// `moat stop`, SIGTERM or SIGHUP to moat run) before the whole sandbox is killed; a second
    /// stop kills at once.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    pub stop_timeout: std::time::Duration,

    /// Run even when a requested limit cannot be enforced on this host (the audit record
    /// names what did not hold).
    #[arg(long)]
    pub dangerously_skip_limits: bool,

    /// Run without Landlock when the kernel lacks it (the audit record says so).
    #[arg(long)]
    pub dangerously_no_landlock: bool,

    /// Run without seccomp when the kernel lacks it (the audit record says so).
    #[arg(long)]
    pub dangerously_no_seccomp: bool,

    /// Which sandbox: `embedded` (namespaces, no daemon; ~6–8 ms from start to exit of `true`
    /// with a running gate, on the 2-core machine of BENCHMARKS.md) or `podman` (the same
    /// contract in a podman container, ~130 ms there; this host's cgroup and ulimit workarounds
    /// are applied automatically).
    #[arg(long, value_enum, default_value_t = BackendArg::Embedded)]
    pub backend: BackendArg,

    /// With `--backend podman`: a local image name or a root directory to run in [default: a
    /// root assembled from the host's /usr, which needs no registry].
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    #[command(flatten)]
    pub llm: LlmArgs,

    #[command(flatten)]
    pub sources: SourceArgs,

    /// The agent's command line.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Where the LLM pass-through routes forward; shared by `gate` and `run`.
#[derive(Debug, Args, Default)]
pub struct LlmArgs {
    /// Where `/llm/anthropic/` forwards, with ANTHROPIC_API_KEY from the gate's (host)
    /// environment added [default: https://api.anthropic.com].
    #[arg(long, value_name = "URL")]
    pub upstream_anthropic: Option<String>,

    /// Where `/llm/openai/` forwards, with OPENAI_API_KEY from the gate's (host) environment
    /// added [default: https://api.openai.com].
    #[arg(long, value_name = "URL")]
    pub upstream_openai: Option<String>,
}

/// Where the data a verdict depends on comes from; shared by `gate`, `run` and `why`.
#[derive(Debug, Args, Default)]
pub struct SourceArgs {
    /// OSV dumps to load at start-up instead of the imported index: a directory holding
    /// `npm.zip` (or `npm/all.zip`), `PyPI.zip`, `crates.io.zip`, or one zip file.
    #[arg(long, value_name = "DIR")]
    pub advisories: Option<PathBuf>,

    /// Popular-name lists for typosquat checks: a directory holding `npm.txt`, `PyPI.txt`,
    /// `crates.io.txt` [default: DATA_DIR/popular when present].
    #[arg(long, value_name = "DIR")]
    pub popular: Option<PathBuf>,

    /// Policy file (TOML) [default: the built-in policy, see `moat policy show-default`].
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Upstream npm registry [default: https://registry.npmjs.org].
    #[arg(long, value_name = "URL")]
    pub upstream_npm: Option<String>,

    /// Upstream PyPI simple index; file URLs come from its pages [default:
    /// https://pypi.org/simple].
    #[arg(long, value_name = "URL")]
    pub upstream_pypi: Option<String>,

    /// Upstream crates sparse index; downloads follow its config.json [default:
    /// https://index.crates.io].
    #[arg(long, value_name = "URL")]
    pub upstream_crates: Option<String>,

    /// Give up on an upstream request after this many seconds [default: 30].
    #[arg(long, value_name = "SECS")]
    pub upstream_timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// Address to listen on [default: 127.0.0.1:7070]. Use port 0 for any free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// The URL clients reach the gate at, used in rewritten tarball URLs and why links
    /// [default: http://LISTEN-ADDRESS].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Serve fetched metadata for this many seconds before revalidating upstream [default: 300].
    #[arg(long, value_name = "SECS")]
    pub metadata_ttl: Option<u64>,

    #[command(flatten)]
    pub llm: LlmArgs,

    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// Ecosystem: npm, pypi or crates.
    pub ecosystem: String,

    /// Package and version: `minimist@1.2.5`, `@scope/name@1.0.0`, or a bare name for the
    /// name-level rules only.
    pub package: String,

    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub sources: SourceArgs,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Import OSV dumps from a zip file or a directory into DATA_DIR/advisories.
    Import {
        /// An OSV `all.zip`, or a directory holding `<ecosystem>.zip` or `<ecosystem>/all.zip`.
        path: PathBuf,
        /// Print the import report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what the advisory database holds.
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download fresh OSV dumps (`BASE/<ecosystem>/all.zip`) and import them. On failure the
    /// data already imported stays as it was.
    Sync {
        /// Where the dumps live [default: OSV's public bucket].
        #[arg(long, value_name = "URL")]
        base: Option<String>,
        /// Only this ecosystem (repeatable) [default: npm, PyPI, crates.io].
        #[arg(long = "ecosystem", value_name = "ECOSYSTEM")]
        ecosystems: Vec<String>,
        /// Give up on a download after this many seconds [default: 300].
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and report waivers that are past their date or match nothing.
    Check {
        /// The policy file (TOML).
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the built-in default policy (a commented starting point for your own).
    ShowDefault,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List recorded decisions, oldest first.
    List {
        /// Only the newest N.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only this ecosystem.
        #[arg(long)]
        ecosystem: Option<String>,
        /// Only this package.
        #[arg(long)]
        package: Option<String>,
        /// Only this action: allow, warn or block.
        #[arg(long)]
        action: Option<String>,
        /// Print as JSON (one array).
        #[arg(long)]
        json: bool,
    },

    /// Print the log's public key as a C2SP verifier key (`<name>+<key id>+<key>`), creating
    /// the signing key (DATA_DIR/audit.key, mode 0600) if there is none yet. Keep a copy
    /// elsewhere: checkpoints and proofs are checked with it.
    Key,

    /// Check the whole log: recompute every leaf hash and the Merkle tree, compare the stored
    /// node hashes, check every checkpoint's root and the chain of checkpoints (each names the
    /// hash of the one before; the newest signature, and any the chain does not vouch for, are
    /// checked with the public key). Exits 1 naming the first bad
    /// index (0-based; the event's seq is index + 1) when anything was tampered with.
    ///
    /// A log rolled back to an older copy, or cut short together with its checkpoints, is
    /// consistent on its own: pass a checkpoint saved elsewhere (`moat audit checkpoint`, or
    /// GET /-/audit/checkpoint) with --against to prove the log still extends it.
    Verify {
        /// A signed checkpoint saved earlier; the log must be an extension of it.
        #[arg(long, value_name = "CHECKPOINT_FILE")]
        against: Option<PathBuf>,
        /// Verify with this public key (from `moat audit key`) instead of the one derived from
        /// DATA_DIR/audit.key; use a copy kept elsewhere to also catch a replaced key.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Print the newest signed checkpoint (save it elsewhere for `verify --against`).
    Checkpoint,

    /// Recreate the system of record (DATA_DIR/record.db, what `moat report` reads) from the
    /// whole log. Not needed in normal use: `moat report` folds new events itself, and rebuilds
    /// when the record no longer matches the log.
    Rebuild {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Print event INDEX (0-based) as stored, its inclusion proof and the newest checkpoint:
    /// with `--json`, a file `moat audit verify-proof` checks with only the public key.
    Prove {
        /// Leaf index, 0-based (the event's seq is index + 1).
        index: u64,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Check a proof printed by `moat audit prove --json` offline, with only the public key.
    VerifyProof {
        /// The JSON file from `moat audit prove --json` (`-` for stdin).
        file: PathBuf,
        /// The log's public key, as `moat audit key` prints it.
        #[arg(long, value_name = "KEY")]
        key: String,
    },

    /// Stream the log for a SIEM, one JSON object per line, up to its newest checkpoint
    ///
    /// --format jsonl writes three kinds of line, told apart by "type":
    ///   {"type":"event","seq":S,"index":S-1,"leaf_hash":H,"leaf":L,"event":{…}}
    ///     L is the event as the Merkle tree hashes it (canonical JSON): H = SHA-256(0x00 || L)
    ///   {"type":"checkpoint","size":N,"root":R,"origin":O,"note":T}
    ///     after the last event of each batch; T is the signed note (check it with `moat audit
    ///     key`), R the root of the first N leaves
    ///   {"type":"frontier","size":K,"hashes":[…]}
    ///     the tree of the first K leaves (its complete subtrees' roots, largest first), written
    ///     where --since left events out, so the roots can still be recomputed
    ///
    /// --format ocsf writes OCSF 1.5.0 events: API Activity (6003) for gate decisions, Process
    /// Activity (1007) Launch and Terminate for sessions; metadata.uid is the event's seq.
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
}

/// `moat audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,

    /// Only events at or after this time: RFC 3339 (`2026-01-02T03:04:05Z`) or an age such as
    /// `30m`, `24h`, `7d`.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The formats of `moat audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Events with their checkpoints interleaved, verifiable against the signed roots.
    Jsonl,
    /// OCSF events, one per line.
    Ocsf,
}

/// A duration as people write it: seconds (`90`, `1.5`), or a number with `s`, `m` or `h`.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, scale) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1.0),
        Some((at, 'm')) => (&text[..at], 60.0),
        Some((at, 'h')) => (&text[..at], 3600.0),
        _ => (text, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite() && *value >= 0.0)
        .and_then(|value| std::time::Duration::try_from_secs_f64(value * scale).ok())
        .ok_or_else(|| format!("{text:?} is not a duration: write seconds, or e.g. 90s, 30m, 2h"))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    /// `run`'s help, as each tree renders it.
    fn run_help(mut command: clap::Command) -> String {
        command.build();
        let run = command
            .find_subcommand_mut("run")
            .expect("a run subcommand");
        format!("{}\n{}", run.render_long_help(), run.render_usage())
    }

    #[test]
    fn the_run_only_tree_has_the_same_run_help() {
        assert_eq!(run_help(Cli::command()), run_help(RunCli::command()));
        assert!(run_help(RunCli::command()).contains("whose only way out is the gate"));
    }

    #[test]
    fn the_run_only_tree_parses_run_as_the_full_tree_does() {
        for argv in [
            &["moat", "run", "--", "true"][..],
            &[
                "moat",
                "run",
                "--data-dir",
                "d",
                "-vv",
                "--memory",
                "1G",
                "--",
                "npm",
                "i",
            ],
            &[
                "moat",
                "run",
                "--ro",
                "/usr/local",
                "--ro",
                "/opt",
                "--secret",
                "TOKEN",
                "--",
                "sh",
                "-c",
                "x",
            ],
            &[
                "moat",
                "run",
                "--backend",
                "podman",
                "--image",
                "debian",
                "--",
                "true",
                "--help",
            ],
        ] {
            let full = Cli::try_parse_from(argv).expect("the full tree parses");
            let run_only = RunCli::try_parse_from(argv).expect("the run tree parses");
            let RunOnly::Run(args) = run_only.command;
            let run_only = Cli {
                global: run_only.global,
                command: Command::Run(args),
            };
            assert_eq!(format!("{full:?}"), format!("{run_only:?}"), "{argv:?}");
        }
        for argv in [
            &["moat", "run"][..],
            &["moat", "run", "--bogus", "--", "true"],
        ] {
            let full = Cli::try_parse_from(argv).expect_err("refused").to_string();
            let run_only = RunCli::try_parse_from(argv)
                .expect_err("refused")
                .to_string();
            assert_eq!(full, run_only, "{argv:?}");
        }
    }

    #[test]
    fn durations_are_seconds_or_a_number_with_a_unit() {
        let secs = std::time::Duration::from_secs_f64;
        for (text, expected) in [
            ("90", secs(90.0)),
            ("1.5", secs(1.5)),
            ("90s", secs(90.0)),
            ("30m", secs(1800.0)),
            ("2h", secs(7200.0)),
            ("0", secs(0.0)),
        ] {
            assert_eq!(duration(text), Ok(expected), "{text}");
        }
        for text in ["", "s", "-1", "1d", "ten", "inf", "NaN"] {
            let error = duration(text).expect_err(text);
            assert!(error.contains("not a duration"), "{error}");
        }
    }
}
