//! `envsubst`'s rules for prompt templates: `$NAME` and `${NAME}` become the variable's value
//! (empty when unset); anything else, `$` included, stays as written.

/// A prompt template (the repository's text, so anyone who can push wrote it) rendered with
/// envsubst's rules, except that a secret-looking variable (`SALVE_TOKEN`, `*KEY*`, ...)
/// expands to nothing: the prompt goes to a model, and its log to the job's.
pub fn prompt(text: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    envsubst(text, &|k| if crate::verify::secret_looking(k) { None } else { get(k) })
}

pub fn envsubst(text: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_len = |s: &str| {
            let b = s.as_bytes();
            if b.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
                b.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count()
            } else {
                0
            }
        };
        if let Some(inner) = after.strip_prefix('{') {
            let n = name_len(inner);
            if n > 0 && inner[n..].starts_with('}') {
                out.push_str(&get(&inner[..n]).unwrap_or_default());
                rest = &inner[n + 1..];
                continue;
            }
        } else {
            let n = name_len(after);
            if n > 0 {
                out.push_str(&get(&after[..n]).unwrap_or_default());
                rest = &after[n..];
                continue;
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_expand_no_secret() {
        let get = |k: &str| Some(format!("<{k}>"));
        let text = "fix ${SEMAPHORE_JOB_ID} $SEMAPHORE_GIT_SHA; ${SALVE_TOKEN} $OPENAI_API_KEY ${DB_PASSWORD} $GITHUB_TOKEN $5 ${x";
        assert_eq!(prompt(text, &get), "fix <SEMAPHORE_JOB_ID> <SEMAPHORE_GIT_SHA>;     $5 ${x");
        assert_eq!(envsubst("${SALVE_TOKEN}", &get), "<SALVE_TOKEN>");
    }
}
