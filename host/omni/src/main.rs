//! # omni: the binary
//!
//! `omni serve` runs the server (the HTTP API over the plugin runtime); `omni plugin render`
//! runs a plugin component once without a server, like `kwctl run`; `omni plugin new` writes a
//! new plugin crate on the SDK; `omni submit`, `omni jobs`, `omni logs`, `omni events` and
//! `omni plugins` talk to a server (`OMNI_URL`). This crate owns the command
//! line, the configuration file and process concerns (signals, logging, listening); the API and
//! the runtime know nothing of them.
//!
//! # Layout
//! - `serve`: `omni serve`: flags over the configuration, signals, then the library's
//!   [`omni::serve`] (the configuration is the library's [`omni::config`]).
//! - `logging`: the process's log (`--log-format text|json`, `RUST_LOG`).
//! - `render`: `omni plugin render`.
//! - `client`: reaching a server (URL, credentials, problem+json errors, exit codes).
//! - `commands`: the client commands.
//! - `credentials`: `omni passwd` and `omni token`, the users' and tokens' hashes for `[auth]`.
//! - `scaffold`: `omni plugin new`, from the files of `host/omni/scaffold/`.

mod client;
mod commands;
mod credentials;
mod logging;
mod render;
mod scaffold;
mod serve;

use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: memory a burst of log lines took comes back (the
/// workspace's Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: a background thread gives pages freed a second ago
/// back to the system, whether or not the server allocates meanwhile (an idle server after a
/// burst would otherwise keep them).
// SAFETY: jemalloc reads this symbol once, as a NUL-terminated C string, when it initializes;
// the bytes are static and end with NUL, and nothing else defines the symbol.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

use clap::{Parser, Subcommand};

/// Omni: build ISO images, RPMs and SRPMs — and any task type a plugin adds — as jobs.
#[derive(Debug, Parser)]
#[command(name = "omni", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Submit a job.
    Submit(commands::SubmitArgs),
    /// List, show, cancel and purge jobs.
    #[command(subcommand)]
    Jobs(commands::JobsCommand),
    /// Print a job's log (-f: follow it until the job ends).
    Logs(commands::LogsArgs),
    /// List and download a job's artifacts.
    #[command(subcommand)]
    Artifacts(commands::ArtifactsCommand),
    /// Print job-change events (-f: then follow them as they happen).
    Events(commands::EventsArgs),
    /// The plugins a server has loaded.
    #[command(subcommand)]
    Plugins(commands::PluginsCommand),
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print the argon2 hash of a password, for a user of the `[auth]` configuration.
    Passwd(credentials::PasswdArgs),
    /// Make a bearer token; prints it and the SHA-256 the `[auth]` configuration keeps.
    Token,
    /// Print a shell completion script (e.g. `omni completions bash > /etc/bash_completion.d/omni`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Render a job's manifests with a plugin file, without a server.
    Render(render::RenderArgs),
    /// Write a new plugin crate (on the SDK) with its templates, tests and README.
    New(scaffold::NewArgs),
}

/// Exit status for a command line the user got wrong, as clap uses.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Plugin(PluginCommand::Render(args)) => render::run(&args),
        Command::Passwd(args) => credentials::passwd(&args),
        Command::Token => return credentials::token(),
        Command::Plugin(PluginCommand::New(args)) => scaffold::run(&args),
        Command::Submit(args) => return client::run(commands::submit(args)),
        Command::Jobs(command) => return client::run(commands::jobs(command)),
        Command::Logs(args) => return client::run(commands::logs(args)),
        Command::Artifacts(command) => return client::run(commands::artifacts(command)),
        Command::Events(args) => return client::run(commands::events(args)),
        Command::Plugins(command) => return client::run(commands::plugins(command)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "omni", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("omni: {e:#}");
            ExitCode::FAILURE
        }
    }
}
