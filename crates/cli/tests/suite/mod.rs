mod agents;
mod bad_input;
mod change_in;
mod commands;
mod containers;
mod corpus;
mod heal;
mod outside;
mod pipelines;
mod run;
mod security;
mod serve;
mod tidy;
mod web;

use std::path::Path;
use std::process::{Command, Output};

pub fn salve(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_salve")).args(args).current_dir(cwd).output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
