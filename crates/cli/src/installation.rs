//! What `salve lint` adds for this installation: warnings for a pipeline that calls a Semaphore
//! helper Salve does not provide yet, starts a service this machine cannot run (`sem-service`),
//! calls a tool this machine lacks (`docker`), or asks for containers, each at the first line of
//! the file that names it.

use salve_pipeline::Plan;
use salve_pipeline::diag::{Diagnostic, Severity};

/// Semaphore helpers real pipelines call that this Salve does not provide yet.
const MISSING_HELPERS: &[&str] = &["spc"];

/// Tools a job may call that are the machine's, not Salve's: warned about when not installed.
const MACHINE_TOOLS: &[&str] = &["docker", "docker-compose"];

/// The warnings for `plan` (compiled from `text`, the file `file`).
pub fn warnings(plan: &Plan, file: &str, text: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut warn = |path: String, needle: &str, message: String| {
        if out.iter().any(|d: &Diagnostic| d.message == message) {
            return;
        }
        let (line, column) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, l[..c].chars().count() + 1)))
            .unwrap_or((1, 1));
        out.push(Diagnostic { file: file.to_owned(), line, column, path, severity: Severity::Warning, message });
    };
    let podman = if plan.blocks.iter().any(|b| !b.agent.containers.is_empty()) {
        salve_runner::container::Podman::find()
    } else {
        None
    };
    let blocks = plan
        .blocks
        .iter()
        .map(|b| (b.index, &b.agent, &b.jobs))
        .chain(plan.after_pipeline.iter().map(|a| (plan.blocks.len(), &a.agent, &a.jobs)));
    for (bi, agent, jobs) in blocks {
        if let Some(c) = agent.containers.first() {
            match &podman {
                None => warn(
                    format!("#/blocks/{bi}"),
                    "containers",
                    format!(
                        "agent.containers ({}): Salve runs containers with Podman, which this machine does not have: \
                         the job will fail at start (Debian: apt-get install podman)",
                        c.image
                    ),
                ),
                Some(p) => {
                    for c in agent.containers.iter().filter(|c| !p.has_image(&c.image)) {
                        warn(
                            format!("#/blocks/{bi}"),
                            &c.image,
                            format!(
                                "image '{}' is not on this machine: Podman pulls it when the job starts (a registry must be reachable), \
                                 or build it here first",
                                c.image
                            ),
                        );
                    }
                }
            }
        }
        for job in jobs {
            let all = job
                .commands
                .iter()
                .chain(&job.epilogue.always)
                .chain(&job.epilogue.on_pass)
                .chain(&job.epilogue.on_fail);
            for command in all {
                if let Some(service) = started_service(command)
                    && let Some(why) = salve_toolbox::sem_service_unavailable(service)
                {
                    warn(
                        format!("#/blocks/{bi}/task/jobs/{}", job.index),
                        &format!("sem-service start {service}"),
                        format!("`sem-service start {service}`: {why}; the job will fail there"),
                    );
                }
                for word in command_words(command) {
                    if MISSING_HELPERS.contains(&word) {
                        warn(
                            format!("#/blocks/{bi}/task/jobs/{}", job.index),
                            word,
                            format!(
                                "`{word}` is a Semaphore helper this Salve does not provide yet: the job will fail with 'command not found'"
                            ),
                        );
                    } else if MACHINE_TOOLS.contains(&word) && !on_path(word) {
                        warn(
                            format!("#/blocks/{bi}/task/jobs/{}", job.index),
                            word,
                            format!(
                                "`{word}` is not installed on this machine: the job will fail with 'command not found'"
                            ),
                        );
                    }
                }
            }
        }
    }
    out
}

/// The service of a `sem-service start SERVICE` in a command, if it has one.
fn started_service(command: &str) -> Option<&str> {
    let mut words = command.split_whitespace().skip_while(|w| *w != "sem-service").skip(1);
    (words.next() == Some("start")).then(|| words.next()).flatten().map(|s| s.trim_end_matches([';', ')']))
}

/// The words of a shell command that stand where a command name does: the first, and the first
/// after `&&`, `||`, `;`, `|`, `(` or `$(`.
fn command_words(command: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut at_start = true;
    for word in command.split(|c: char| c.is_whitespace()) {
        if word.is_empty() {
            continue;
        }
        let word = word.trim_start_matches("$(").trim_start_matches('(');
        // Keywords and `sudo` leave the next word in a command's place.
        let keyword =
            matches!(word, "if" | "then" | "do" | "else" | "elif" | "while" | "until" | "!" | "time" | "sudo");
        if at_start && !keyword && !word.is_empty() && !word.contains('=') {
            out.push(word.trim_end_matches([';', ')']));
        }
        // `NAME=value` before a command is an assignment: the command comes after it.
        let assignment = at_start && word.split_once('=').is_some_and(|(k, _)| !k.is_empty() && !k.contains('/'));
        at_start =
            keyword || assignment || matches!(word, "&&" | "||" | ";" | "|") || word.ends_with(';') || word.is_empty();
    }
    out
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

#[cfg(test)]
mod tests {
    use super::command_words;

    #[test]
    fn command_words_are_where_commands_stand() {
        assert_eq!(command_words("sem-service start postgres 14"), ["sem-service"]);
        assert_eq!(command_words("cd x && docker build . ; make"), ["cd", "docker", "make"]);
        assert_eq!(command_words("echo sem-service"), ["echo"]);
        assert_eq!(command_words("FOO=1 spc compile"), ["spc"]);
        assert_eq!(command_words("if true; then install-package foo; fi"), ["true", "install-package", "fi"]);
        assert_eq!(command_words("sudo docker ps | grep x"), ["docker", "grep"]);
    }
}
