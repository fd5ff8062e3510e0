//! Any text as a `when` condition: evaluate, list inputs and reduce never panic, and an
//! expression that parses renders back to text that parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use salve_pipeline::when;

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else { return };
    let mut params = when::Params::new();
    for (k, v) in [("branch", "main"), ("tag", ""), ("pull_request", "12"), ("result", "failed"), ("result_reason", "test")] {
        params.insert(k.into(), v.into());
    }
    let _ = when::evaluate(expr, &params, &when::NoFunctions, false);
    let _ = when::evaluate(expr, &params, &when::NoFunctions, true);
    let _ = when::list_inputs_json(expr);
    let _ = when::reduce_json(&serde_json_entry(expr));
    if let Ok(ast) = when::parse(expr) {
        let text = ast.to_expr();
        // Erlang renders large floats with an exponent (`1.0e20`), which the language cannot
        // read back; the round trip holds for everything else.
        let has_exponent = text.as_bytes().windows(2).any(|w| w[0].is_ascii_digit() && w[1] == b'e');
        if has_exponent {
            return;
        }
        let again = when::parse(&text).unwrap_or_else(|e| panic!("{expr:?} rendered as {text:?}, which does not parse: {e}"));
        assert_eq!(ast, again, "{expr:?} rendered as {text:?}");
    }
});

fn serde_json_entry(expr: &str) -> serde_json::Value {
    serde_json::json!({ "expression": expr, "inputs": { "keywords": { "branch": "main" }, "functions": [] } })
}
