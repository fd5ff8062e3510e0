//! `salve secret create|list|delete`: secrets jobs reference by name (`secrets:` in the YAML).
//! Values are sealed before they reach the database and are never printed. With `--server`
//! (or `SALVE_SERVER`) the secret goes to that server through its API; without, into the
//! local data folder `salve run` uses.

use clap::{Args, Subcommand};
use salve_contract::api;
use salve_store::secrets::SecretData;

use crate::client::{Client, ServerArgs, encode};
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
        #[command(flatten)]
        at: Where,
    },
    /// List secret names (never values).
    List(Where),
    /// Delete a secret.
    Delete {
        name: String,
        #[command(flatten)]
        at: Where,
    },
}

#[derive(Args)]
pub struct Where {
    /// A Salve server to keep the secret on (token from SALVE_TOKEN) [default: the local data folder].
    #[arg(long, env = "SALVE_SERVER")]
    server: Option<String>,
}

fn fail(message: &str) -> u8 {
    err!("error: {message}");
    1
}

pub fn run(command: SecretCommand) -> u8 {
    let at = match &command {
        SecretCommand::Create { at, .. } | SecretCommand::List(at) | SecretCommand::Delete { at, .. } => at,
    };
    let done = match &at.server {
        Some(server) => Client::new(&ServerArgs { server: server.clone() }).and_then(|c| remote(&c, command)),
        None => State::open().and_then(|s| local(&s, command)),
    };
    match done {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn local(state: &State, command: SecretCommand) -> Result<(), String> {
    match command {
        SecretCommand::Create { name, env, files, .. } => {
            let data = secret_data(&name, &env, &files)?;
            let sealed = state.sealer().and_then(|s| s.seal(&name, &data).map_err(|e| e.to_string()))?;
            state.rt.block_on(state.store.put_secret(&name, &sealed)).map_err(|e| e.to_string())?;
            saved(&name, &data);
        }
        SecretCommand::List(_) => {
            for n in state.rt.block_on(state.store.secret_names()).map_err(|e| e.to_string())? {
                out!("{n}");
            }
        }
        SecretCommand::Delete { name, .. } => {
            if !state.rt.block_on(state.store.delete_secret(&name)).map_err(|e| e.to_string())? {
                return Err(format!("there is no secret '{name}' (`salve secret list` shows them)"));
            }
            out!("Secret '{name}' deleted.");
        }
    }
    Ok(())
}

fn remote(client: &Client, command: SecretCommand) -> Result<(), String> {
    use base64::Engine as _;
    match command {
        SecretCommand::Create { name, env, files, .. } => {
            let data = secret_data(&name, &env, &files)?;
            let env_vars =
                data.env_vars.iter().map(|(k, v)| api::SecretVariable { name: k.clone(), value: v.clone() }).collect();
            let files = data
                .files
                .iter()
                .map(|(p, c)| api::SecretFile {
                    path: p.clone(),
                    content: base64::engine::general_purpose::STANDARD.encode(c),
                })
                .collect();
            let secret = api::NewSecret { name: name.clone(), env_vars, files };
            client.post::<api::SecretSaved>("/api/v1/secrets", &secret)?;
            saved(&name, &data);
        }
        SecretCommand::List(_) => {
            for n in client.get::<api::SecretList>("/api/v1/secrets")?.secrets {
                out!("{n}");
            }
        }
        SecretCommand::Delete { name, .. } => {
            client.delete::<api::Deleted>(&format!("/api/v1/secrets/{}", encode(&name)))?;
            out!("Secret '{name}' deleted.");
        }
    }
    Ok(())
}

fn saved(name: &str, data: &SecretData) {
    out!("Secret '{name}' saved ({} variable(s), {} file(s)).", data.env_vars.len(), data.files.len());
}

/// The secret the flags describe, or what is wrong with them.
fn secret_data(name: &str, env: &[String], files: &[String]) -> Result<SecretData, String> {
    if !salve_contract::valid_secret_name(name) {
        return Err(format!(
            "'{name}' is not a valid secret name: 1 to 128 characters, no '/', no control characters, no spaces at either end"
        ));
    }
    if env.is_empty() && files.is_empty() {
        return Err("a secret needs at least one -e KEY=VALUE or -f LOCAL:REMOTE".into());
    }
    let mut data = SecretData::default();
    for e in env {
        match e.split_once('=') {
            Some((k, v)) if salve_runner::script::valid_name(k) => data.env_vars.push((k.to_owned(), v.to_owned())),
            _ => {
                let shown = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
                return Err(format!("-e wants KEY=VALUE with KEY a shell variable name, got '{shown}=…'"));
            }
        }
    }
    for f in files {
        let Some((local, remote)) = f.split_once(':').filter(|(l, r)| !l.is_empty() && !r.is_empty()) else {
            return Err(format!("-f wants LOCAL:REMOTE, got '{f}'"));
        };
        let content = std::fs::read(local).map_err(|e| format!("cannot read {local}: {e}"))?;
        data.files.push((remote.to_owned(), content));
    }
    Ok(data)
}
