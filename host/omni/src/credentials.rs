//! `omni passwd` and `omni token`: credentials for the `[auth]` configuration.

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

/// Flags of `omni passwd`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Read the password from the first line of standard input instead of the terminal.
    #[arg(long)]
    stdin: bool,
}

/// Prints the argon2id hash of a password, for `password_hash` of an `[[auth.users]]` entry.
pub fn passwd(args: &PasswdArgs) -> anyhow::Result<ExitCode> {
    let password = if args.stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("password: ")
            .context("cannot read the password from the terminal (use --stdin)")?;
        let again = rpassword::prompt_password("again: ")
            .context("cannot read the password from the terminal (use --stdin)")?;
        if first != again {
            anyhow::bail!("the two passwords differ");
        }
        first
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    let hash = omni_api::auth::hash_password(&password)?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

/// Prints a new bearer token and its SHA-256, for `sha256` of an `[[auth.tokens]]` entry.
pub fn token() -> ExitCode {
    let (token, sha256) = omni_api::auth::new_token();
    println!("token:  {token}");
    println!("sha256: {sha256}");
    eprintln!(
        "give the token to its user (OMNI_TOKEN); the server's configuration keeps only the sha256"
    );
    ExitCode::SUCCESS
}
