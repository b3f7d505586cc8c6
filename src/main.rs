//! The `switchboard` command line: `run`, `check`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use switchboard::config;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hosted channel gateway: every channel into one signed, durable webhook stream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
    },
    /// Print the version.
    Version,
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
        eprintln!("{}: {} problem(s):", path.display(), problems.len());
        for p in &problems {
            eprintln!("{p}");
        }
        ExitCode::from(1)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("switchboard {}", version());
            ExitCode::SUCCESS
        }
        Command::Check { config } => {
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
                    ExitCode::SUCCESS
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
