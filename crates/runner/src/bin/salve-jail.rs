//! The jail on its own (`salve __jail` is the same code in the `salve` binary): the runner's
//! tests run their sandboxes through it, as Salve does.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(i32::from(salve_runner::jail::main(&args)));
}
