//! `checkout` (SEMAPHORE.md §4.1): clones `SEMAPHORE_GIT_URL` into `SEMAPHORE_GIT_DIR` (relative
//! to the current directory) and moves it to `SEMAPHORE_GIT_SHA`. The `cd` into the directory is
//! done by the shell function of the same name that the runner defines around this command.

use std::path::Path;

use salve_git::Repo;

pub fn main(args: &[String]) -> i32 {
    if let Some(bad) = args.iter().find(|a| a.as_str() != "--use-cache") {
        eprintln!("checkout: unknown argument '{bad}' (the only option is --use-cache)");
        return 1;
    }
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let required = ["SEMAPHORE_GIT_BRANCH", "SEMAPHORE_GIT_URL", "SEMAPHORE_GIT_DIR", "SEMAPHORE_GIT_SHA"];
    let missing: Vec<&str> = required.into_iter().filter(|k| var(k).is_none()).collect();
    if !missing.is_empty() {
        for k in missing {
            eprintln!("{k} is not set");
        }
        eprintln!("Exiting checkout");
        return 1;
    }
    let (url, dir, sha, branch) = (
        var("SEMAPHORE_GIT_URL").unwrap_or_default(),
        var("SEMAPHORE_GIT_DIR").unwrap_or_default(),
        var("SEMAPHORE_GIT_SHA").unwrap_or_default(),
        var("SEMAPHORE_GIT_BRANCH").unwrap_or_default(),
    );
    let depth_text = var("SEMAPHORE_GIT_DEPTH").unwrap_or_else(|| "50".into());
    let Ok(depth) = depth_text.parse::<u32>() else {
        eprintln!("SEMAPHORE_GIT_DEPTH must be a whole number, got '{depth_text}'");
        return 1;
    };
    if dir.split('/').any(|c| c == "..") || dir.starts_with('/') {
        eprintln!("SEMAPHORE_GIT_DIR must be a directory name inside the current directory, got '{dir}'");
        return 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let cwd = Repo::new(".");
    let ref_type = var("SEMAPHORE_GIT_REF_TYPE").unwrap_or_default();
    let clone_target = match ref_type.as_str() {
        "tag" => var("SEMAPHORE_GIT_TAG_NAME").unwrap_or(branch.clone()),
        "pull-request" => String::new(),
        _ => branch.clone(),
    };
    println!("Performing shallow clone with depth: {depth}");
    let target = (!clone_target.is_empty()).then_some(clone_target.as_str());
    if cwd.clone_streamed(&url, &dir, Some(depth), target).is_err() {
        if ref_type == "tag" {
            eprintln!("Release {clone_target} not found .... Exiting");
            return 1;
        }
        println!("Branch clone failed; cloning the whole repository");
        let _ = std::fs::remove_dir_all(&dir);
        if cwd.clone_streamed(&url, &dir, None, None).is_err() {
            eprintln!("Cloning {url} failed .... Exiting");
            return 1;
        }
    }
    let repo = Repo::new(Path::new(&dir));
    if ref_type == "pull-request"
        && let Some(git_ref) = var("SEMAPHORE_GIT_REF")
    {
        let _ = repo.fetch_streamed(&format!("+{git_ref}:"));
    }
    if repo.resolve(&sha).is_none() {
        let _ = repo.unshallow_streamed();
        let _ = repo.fetch_streamed(&sha);
    }
    if repo.resolve(&sha).is_none() || repo.reset_hard_streamed(&sha).is_err() {
        eprintln!("Revision: {sha} not found .... Exiting");
        return 1;
    }
    // On a Salve server, `git push origin` goes to the server's git URL, authenticated by the
    // job's SALVE_TOKEN (a promoted pipeline's), read from the environment by a credential
    // helper: the token is never written to the repository's configuration.
    if let (Some(server), Some(project)) = (var("SALVE_SERVER"), var("SEMAPHORE_PROJECT_NAME")) {
        let push_url = format!("{}/git/{project}.git", server.trim_end_matches('/'));
        let helper = "!f() { test \"$1\" = get && echo username=salve && echo \"password=$SALVE_TOKEN\"; }; f";
        let _ = repo.config_set("remote.origin.pushurl", &push_url);
        let _ = repo.config_set(&format!("credential.{push_url}.helper"), helper);
    }
    println!("HEAD is now at {}", &sha[..sha.len().min(7)]);
    0
}
