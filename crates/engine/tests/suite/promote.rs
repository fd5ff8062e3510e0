//! The rules around a pipeline: which promotions fire (§6.2), manual promotion parameters
//! (§6.3), queues and auto_cancel (§1.9).

use std::collections::BTreeMap;

use salve_engine::promote::{AutoCancel, auto_cancel, auto_promotions, manual_promotion, queue};
use salve_engine::{GitContext, RefKind};
use salve_pipeline::when::NoFunctions;

use super::run::plan;

const HEAD: &str = "version: v1.0\nname: P\nagent:\n  machine:\n    type: e1-standard-2\n    os_image: ubuntu2004\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: J\n          commands: [\"true\"]\n";

fn git(ref_type: RefKind, label: &str) -> GitContext {
    GitContext {
        provider: "salve".into(),
        url: String::new(),
        repo_name: "r".into(),
        repo_slug: "o/r".into(),
        sha: "0".repeat(40),
        ref_type,
        label: label.into(),
        target_branch: None,
        pr_branch: None,
        pr_sha: None,
        pr_name: None,
        commit_range: String::new(),
        commit_author: String::new(),
        committer: String::new(),
    }
}

fn fired(yaml: &str, branch: &str, result: &str, reason: Option<&str>) -> Vec<String> {
    let p = plan(&format!("{HEAD}{yaml}"));
    auto_promotions(&p, ".semaphore/semaphore.yml", &git(RefKind::Branch, branch), result, reason, &NoFunctions)
        .unwrap()
        .into_iter()
        .map(|f| format!("{}:{}:{:?}", f.name, f.pipeline_file, f.params))
        .collect()
}

#[test]
fn the_seeds_two_promotions_fire_where_they_should() {
    let yaml = "promotions:\n  - name: Heal\n    pipeline_file: heal.yml\n    auto_promote:\n      when: \"result = 'failed' AND branch !~ '^selfheal-.*'\"\n  - name: PR\n    pipeline_file: /ci/pr.yml\n    auto_promote:\n      when: \"result = 'passed' AND branch =~ '^selfheal-.*'\"\n    parameters:\n      env_vars:\n        - name: BASE\n          default_value: main\n        - name: EMPTY\n          default_value: \"\"\n        - name: NONE\n          required: false\n";
    assert_eq!(fired(yaml, "main", "failed", Some("test")), ["Heal:.semaphore/heal.yml:{}"]);
    assert!(fired(yaml, "main", "passed", None).is_empty());
    assert!(fired(yaml, "selfheal-abc", "failed", Some("test")).is_empty());
    // Only non-empty defaults are passed to an automatic promotion.
    assert_eq!(fired(yaml, "selfheal-abc", "passed", None), ["PR:ci/pr.yml:{\"BASE\": \"main\"}"]);
}

#[test]
fn deprecated_auto_promote_on_matches_result_reason_and_branch() {
    let yaml = "promotions:\n  - name: Old\n    pipeline_file: old.yml\n    auto_promote_on:\n      - result: failed\n        result_reason: test\n        branch: [\"^rel-\"]\n";
    assert_eq!(fired(yaml, "rel-1", "failed", Some("test")).len(), 1);
    assert!(fired(yaml, "rel-1", "failed", Some("malformed")).is_empty());
    assert!(fired(yaml, "main", "failed", Some("test")).is_empty());
    assert!(fired(yaml, "rel-1", "passed", None).is_empty());
}

#[test]
fn manual_promotions_check_parameters_with_semaphores_messages() {
    let p = plan(&format!(
        "{HEAD}promotions:\n  - name: Deploy\n    pipeline_file: deploy.yml\n    parameters:\n      env_vars:\n        - name: TARGET\n          options: [staging, production]\n          default_value: staging\n        - name: REASON\n"
    ));
    let params =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    let promote = |target: &str, result: &str, given: &[(&str, &str)], force: bool| {
        manual_promotion(&p, ".semaphore/semaphore.yml", target, Some(result), &params(given), force)
    };
    assert_eq!(
        promote("Deploy", "failed", &[("REASON", "x")], false).unwrap_err().to_string(),
        "Triggering target when pipeline is not passed requires override confirmation."
    );
    assert_eq!(
        promote("Deploy", "passed", &[], false).unwrap_err().to_string(),
        "Missing value for required parameter 'REASON'."
    );
    assert_eq!(
        promote("Deploy", "passed", &[("REASON", "x"), ("NOPE", "1")], false).unwrap_err().to_string(),
        "Parameter 'NOPE' is not defined in promotion's yml definition."
    );
    assert_eq!(
        promote("Deploy", "passed", &[("REASON", "x"), ("TARGET", "moon")], false).unwrap_err().to_string(),
        "Value 'moon' of parameter 'TARGET' is not one of predefined options."
    );
    let ok = promote("Deploy", "failed", &[("REASON", "hotfix")], true).unwrap();
    assert_eq!(ok.params, params(&[("REASON", "hotfix"), ("TARGET", "staging")]));
    assert_eq!(ok.pipeline_file, ".semaphore/deploy.yml");
    assert!(promote("Nope", "passed", &[], false).unwrap_err().to_string().contains("Deploy"));
}

#[test]
fn queues_and_auto_cancel_follow_the_first_matching_rule() {
    let p = plan(&format!(
        "{HEAD}queue:\n  - when: \"branch = 'main'\"\n    name: prod\n    scope: organization\n  - when: true\n    processing: parallel\nauto_cancel:\n  running:\n    when: \"branch != 'main'\"\n  queued:\n    when: true\n"
    ));
    let main = git(RefKind::Branch, "main");
    let feature = git(RefKind::Branch, "f");
    let q = queue(&p, &main, ".semaphore/semaphore.yml").unwrap();
    assert_eq!((q.key.as_str(), q.parallel), ("organization:prod", false));
    let q = queue(&p, &feature, ".semaphore/semaphore.yml").unwrap();
    assert_eq!((q.key.as_str(), q.parallel), ("project:f-.semaphore/semaphore.yml", true));
    assert_eq!(auto_cancel(&p, &main).unwrap(), AutoCancel::Queued);
    assert_eq!(auto_cancel(&p, &feature).unwrap(), AutoCancel::Running);
    let plain = plan(HEAD);
    assert_eq!(queue(&plain, &main, "x.yml").unwrap().key, "project:main-x.yml");
    assert_eq!(auto_cancel(&plain, &main).unwrap(), AutoCancel::None);
}
