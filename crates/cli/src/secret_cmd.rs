//! `salve secret create|list|delete`: secrets jobs reference by name (`secrets:` in the YAML).
//! Values are sealed before they reach the database and are never printed.

use clap::Subcommand;
use salve_store::secrets::SecretData;

use crate::state::State;
use crate::{err, out};

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Create (or replace) a secret: environment variables and files a job gets.
    Create {
        name: String,
        /// An environment variable, KEY=VALUE (repeatable).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// A file, LOCAL_PATH:PATH_IN_JOB (repeatable); the path in the job is relative to its home.
        #[arg(short = 'f', long = "file", value_name = "LOCAL:REMOTE")]
        files: Vec<String>,
    },
    /// List secret names (never values).
    List,
    /// Delete a secret.
    Delete { name: String },
}

fn fail(message: &str) -> u8 {
    err!("error: {message}");
    1
}

pub fn run(command: SecretCommand) -> u8 {
    let state = match State::open() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    match command {
        SecretCommand::Create { name, env, files } => {
            if !salve_server::valid_secret_name(&name) {
                return fail(&format!(
                    "'{name}' is not a valid secret name: 1 to 128 characters, no '/', no control characters, no spaces at either end"
                ));
            }
            if env.is_empty() && files.is_empty() {
                return fail("a secret needs at least one -e KEY=VALUE or -f LOCAL:REMOTE");
            }
            let mut data = SecretData::default();
            for e in &env {
                match e.split_once('=') {
                    Some((k, v)) if salve_runner::script::valid_name(k) => {
                        data.env_vars.push((k.to_owned(), v.to_owned()))
                    }
                    _ => {
                        let shown = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
                        return fail(&format!("-e wants KEY=VALUE with KEY a shell variable name, got '{shown}=…'"));
                    }
                }
            }
            for f in &files {
                let Some((local, remote)) = f.split_once(':').filter(|(l, r)| !l.is_empty() && !r.is_empty()) else {
                    return fail(&format!("-f wants LOCAL:REMOTE, got '{f}'"));
                };
                match std::fs::read(local) {
                    Ok(content) => data.files.push((remote.to_owned(), content)),
                    Err(e) => return fail(&format!("cannot read {local}: {e}")),
                }
            }
            let sealed = match state.sealer().and_then(|s| s.seal(&name, &data).map_err(|e| e.to_string())) {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            if let Err(e) = state.rt.block_on(state.store.put_secret(&name, &sealed)) {
                return fail(&e.to_string());
            }
            out!("Secret '{name}' saved ({} variable(s), {} file(s)).", data.env_vars.len(), data.files.len());
            0
        }
        SecretCommand::List => match state.rt.block_on(state.store.secret_names()) {
            Ok(names) => {
                for n in names {
                    out!("{n}");
                }
                0
            }
            Err(e) => fail(&e.to_string()),
        },
        SecretCommand::Delete { name } => match state.rt.block_on(state.store.delete_secret(&name)) {
            Ok(true) => {
                out!("Secret '{name}' deleted.");
                0
            }
            Ok(false) => fail(&format!("there is no secret '{name}' (`salve secret list` shows them)")),
            Err(e) => fail(&e.to_string()),
        },
    }
}
