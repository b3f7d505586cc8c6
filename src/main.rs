//! The `switchboard` command line: `run`, `check`, `version`, `completions`, and the hidden
//! `man` that packaging/build.sh turns into switchboard(1).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use switchboard::config;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hosted channel gateway: every channel into one signed, durable webhook stream",
    long_about = LONG_ABOUT
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const LONG_ABOUT: &str = "\
Self-hosted channel gateway: mail (IMAP/SMTP) and API channels in; one normalized, signed, durable \
webhook and JSON event stream out; replies sent back through the right channel.

Configuration: /etc/switchboard/switchboard.toml (or --config, or $SWITCHBOARD_CONFIG), layered \
over embedded defaults and under SWITCHBOARD_* environment variables. `switchboard check` \
lists every problem as `key.path: reason`.

State: the directory named by storage.path (/var/lib/switchboard under systemd): SQLite \
database and attachment blobs. Back it up while running with `switchboard backup DEST` (a plain \
copy of the directory while it runs can miss committed messages).

Signals: SIGHUP re-reads the configuration and applies it without dropping work (a config with \
problems is refused and the running one kept; under systemd, `systemctl reload switchboard` \
does this and tells the outcome); SIGTERM and SIGINT drain and stop.";

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Config file [default: $SWITCHBOARD_CONFIG, else /etc/switchboard/switchboard.toml]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration; print every problem as `key.path: reason` and exit 1.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also reach every peer and exit 1 if one fails: log in to each mail channel's IMAP and
        /// SMTP servers (folders opened read-only, nothing sent; on OAuth2 the servers are only
        /// reached, since the service owns the grant, and the token endpoint is asked whether it
        /// takes the client); send one HEAD request to each webhook consumer's url and api
        /// channel's outbound_url, over TLS with its ca_file (no event is sent).
        #[arg(long)]
        connect: bool,
    },
    /// Copy the state directory into DEST (new or empty) while the service runs: a consistent
    /// snapshot of the database plus the attachment blobs, checked before it is reported done.
    /// Run as root, it writes as the owner of the state directory.
    Backup {
        #[arg(long, short)]
        config: Option<PathBuf>,
        dest: PathBuf,
    },
    /// Authorise the app for a mail channel's mailbox (OAuth2: Gmail, Microsoft 365) and keep
    /// the refresh token: in the oauth2 table's refresh_token_file, in --write FILE, or on
    /// stdout. Prints an address to open in a browser (or, with --device, a code to enter at
    /// the provider's page), then waits for the sign-in. The new grant logs in to the mail
    /// servers first: if they refuse it (signed in as another account), nothing is kept.
    /// Reload afterwards to use the token.
    Oauth2 {
        /// The channel's id.
        channel: String,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The device flow (RFC 8628): a code to enter on any device (Microsoft; not Gmail).
        #[arg(long)]
        device: bool,
        /// The [channels.smtp.oauth2] table's grant, when SMTP has one of its own.
        #[arg(long)]
        smtp: bool,
        /// The loopback port the browser is sent back to (for an SSH tunnel); default: any.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Write the refresh token to this file instead (owned and permitted like the config).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Ask the running gateway (PID; the systemd unit passes $MAINPID) to reload its
    /// configuration, and wait for its verdict: exit 0 when applied, 1 with the problems when
    /// refused (the running configuration is kept). The unit's ExecReload; needs
    /// $RUNTIME_DIRECTORY, where the gateway reports. Elsewhere send SIGHUP and read the log.
    Reload { pid: u32 },
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (switchboard.1, switchboard-run.1, ...) into a directory; used by
    /// packaging/build.sh.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// The package version and, when built by packaging/build.sh, the git revision.
fn version() -> String {
    match option_env!("SWITCHBOARD_GIT_REV") {
        Some(rev) if !rev.is_empty() => format!("{} (git {rev})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn config_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("SWITCHBOARD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
}

fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|problems| {
        // Under systemd (`check` is the unit's ExecStartPre) each line is an error for the
        // journal, so `journalctl -p err` says why a start was refused.
        let error = switchboard::telemetry::error_line_mark();
        eprintln!("{error}{}: {} problem(s):", path.display(), problems.len());
        for p in &problems {
            eprintln!("{error}{p}");
        }
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "switchboard", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => match clap_mangen::generate_to(Cli::command(), &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard: cannot write the man pages into {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
        Command::Backup { config, dest } => {
            let path = config_path(config);
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let state = &config.storage.path;
            if let Err(e) = become_owner_of(state, &dest) {
                eprintln!("switchboard: {e}");
                return ExitCode::from(2);
            }
            match switchboard::store::backup::backup(state, &dest) {
                Ok(r) => {
                    println!(
                        "{} -> {}: {} message(s), {} event(s), {} blob(s), {} bytes; integrity ok",
                        state.display(),
                        dest.display(),
                        r.messages,
                        r.events,
                        r.blobs,
                        r.bytes
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard: backup failed: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Reload { pid } => match switchboard::systemd::ask_reload(pid, Duration::from_secs(60)) {
            Ok(switchboard::systemd::ReloadVerdict::Applied) => {
                println!("configuration reloaded");
                ExitCode::SUCCESS
            }
            Ok(switchboard::systemd::ReloadVerdict::Refused(problems)) => {
                let error = switchboard::telemetry::error_line_mark();
                eprintln!("{error}configuration refused ({} problem(s)); the running one is kept:", problems.len());
                problems.iter().for_each(|p| eprintln!("{error}{p}"));
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("{}switchboard: {e}", switchboard::telemetry::error_line_mark());
                ExitCode::from(2)
            }
        },
        Command::Oauth2 { channel, config, device, smtp, port, write } => {
            let request = switchboard::channels::email::authorise::Request {
                config: config_path(config),
                channel,
                smtp,
                device,
                port,
                write,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            match runtime.block_on(switchboard::channels::email::authorise::run(&request)) {
                Ok(switchboard::channels::email::authorise::Kept::File { configured: true, .. }) => {
                    eprintln!("Reload to use it (systemctl reload switchboard): it replaces the stored token of the old grant.");
                    ExitCode::SUCCESS
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}switchboard: {e}", switchboard::telemetry::error_line_mark());
                    ExitCode::from(1)
                }
            }
        }
        Command::Version => {
            println!("switchboard {}", version());
            ExitCode::SUCCESS
        }
        Command::Check { config, connect } => {
            let path = config_path(config);
            match load(&path) {
                Ok(c) => {
                    println!(
                        "{}: ok ({} channel(s), {} webhook consumer(s), {} token(s))",
                        path.display(),
                        c.channels.len(),
                        c.webhooks.len(),
                        c.tokens.len()
                    );
                    if !connect {
                        return ExitCode::SUCCESS;
                    }
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    let (lines, all_ok) = runtime.block_on(switchboard::check::connect_report(&c));
                    lines.iter().for_each(|line| println!("{line}"));
                    if all_ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(code) => code,
            }
        }
        Command::Run { config } => {
            let path = config_path(config);
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => {
                    eprintln!(
                        "refusing to start: fix the problems above (switchboard check --config {})",
                        path.display()
                    );
                    return code;
                }
            };
            let runtime =
                tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
            match runtime.block_on(switchboard::app::run(config, &path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("switchboard: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Run as root, takes on the user and group owning the state directory (creating `dest` for
/// them first), so that neither the copy nor any SQLite side file it touches ends up owned by
/// root where the service cannot use it. Otherwise does nothing.
fn become_owner_of(state: &std::path::Path, dest: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let meta = std::fs::metadata(state).map_err(|e| format!("cannot read {}: {e}", state.display()))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Ok(());
    }
    if !dest.exists() {
        std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        std::os::unix::fs::chown(dest, Some(uid), Some(gid))
            .map_err(|e| format!("cannot hand {} to uid {uid}: {e}", dest.display()))?;
    }
    // SAFETY: plain syscalls on integers; the order (groups, gid, uid) is the one that works.
    let failed =
        unsafe { libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 };
    if failed {
        return Err(format!("cannot switch to uid {uid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
