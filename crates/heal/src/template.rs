//! `envsubst`'s rules for prompt templates: `$NAME` and `${NAME}` become the variable's value
//! (empty when unset); anything else, `$` included, stays as written.

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
