//! Every case of `shared/conformance/when_cases.json`, checked against the implementation.

use salve_pipeline::when::{self, FunctionError, Functions, Params, Value, change_in, lexer};
use serde_json::{Value as Json, json};

use super::common::conformance_dir;

/// The function registries of the reference's test suite (SEMAPHORE.md §2.9).
struct Fixture(&'static str);

impl Functions for Fixture {
    fn arities(&self, name: &str) -> Option<Vec<usize>> {
        match (self.0, name) {
            ("when_test_functions", "test_fun_0") => Some(vec![0]),
            ("when_test_functions", "test_fun_1") => Some(vec![1]),
            ("when_test_functions", "test_fun_2") => Some(vec![2]),
            ("when_test_functions", "failing_fun") => Some(vec![1]),
            ("when_test_functions", "test_fun_3") => Some(vec![2]),
            ("when_test_functions", "test_fun_4") => Some(vec![4]),
            ("when_test_functions", "test_fun_atom_err") => Some(vec![0]),
            ("interpreter_test_functions", "test_fun_0") => Some(vec![0]),
            ("interpreter_test_functions", "test_fun_1") => Some(vec![0, 1, 3]),
            ("interpreter_test_functions", "test_fun_2") => Some(vec![2]),
            _ => None,
        }
    }

    fn call(&self, name: &str, args: &[Value], params: &Params) -> Result<Value, FunctionError> {
        let branch = params.get("branch").and_then(Json::as_str).map(|s| Value::Str(s.into()));
        let is_branch = |v: &Value| Some(v) == branch.as_ref();
        Ok(Value::Bool(match (name, args) {
            ("test_fun_0", []) | ("test_fun_1", []) => true,
            ("test_fun_1", [b]) => is_branch(b),
            ("test_fun_2", [b, Value::Int(i)]) => is_branch(b) && *i > 1,
            ("test_fun_2", [_, _]) => return Err(FunctionError::Message("Second parameter must be integer.".into())),
            ("failing_fun", _) => return Err(FunctionError::Message("This always fails.".into())),
            ("test_fun_3", _) => false,
            ("test_fun_4", [_, Value::Map(m2), _, _]) => m2.get("a").is_some_and(is_branch),
            ("test_fun_atom_err", []) => {
                return Err(FunctionError::Typed { kind: "malformed".into(), message: "Test".into() });
            }
            _ => return Err(FunctionError::Message(format!("fixture has no {name}/{}", args.len()))),
        }))
    }
}

fn run_case(case: &Json) -> Result<(), String> {
    let kind = case["kind"].as_str().unwrap_or_default();
    let expr = case["expr"].as_str().unwrap_or_default();
    let expected = &case["expected"];
    let got = match kind {
        "evaluate" => {
            let params: Params = case["params"].as_object().cloned().unwrap_or_default();
            let dry_run = case["options"]["dry_run"].as_bool().unwrap_or(false);
            let fixture = case["fixture"].as_str();
            let res = match fixture {
                Some("when_test_functions") => when::evaluate(expr, &params, &Fixture("when_test_functions"), dry_run),
                Some("interpreter_test_functions") => {
                    when::evaluate(expr, &params, &Fixture("interpreter_test_functions"), dry_run)
                }
                _ => when::evaluate(expr, &params, &when::NoFunctions, dry_run),
            };
            if expected.get("reference_raises").is_some() {
                // The reference crashes here; an error (not a panic, not a value) is right.
                return match res {
                    Err(_) => Ok(()),
                    Ok(v) => Err(format!("expected an error, got {v}")),
                };
            }
            match res {
                Ok(b) => json!(b),
                Err(when::WhenError::Message(m)) => json!({ "error": m }),
                Err(when::WhenError::Typed { kind, message }) => {
                    json!({ "error": { "type": kind, "message": message } })
                }
            }
        }
        "list_inputs" => when::list_inputs_json(expr),
        "reduce" if expected.get("result").is_some() => {
            when::reduce_json(&json!({ "expression": expr, "inputs": case["params"] }))
        }
        "reduce" => {
            // Reducer-level expectations: the reduced AST, the missing inputs and the rendering.
            let ast = when::parse(expr).map_err(|e| e.to_string())?;
            let entry = json!({ "expression": expr, "inputs": case["params"] });
            let text = when::reduce_json(&entry);
            let inputs = when::Inputs {
                keywords: case["params"]["keywords"].as_object().cloned().unwrap_or_default(),
                functions: Vec::new(),
            };
            let (reduced, missing) = when::reduce(&ast, &inputs).map_err(|e| e.to_string())?;
            json!({
                "ast": reduced.to_json(),
                "missing_inputs": missing.iter().map(when::Input::to_json).collect::<Vec<_>>(),
                "reduced": text["result"],
            })
        }
        "parse" => match when::parse(expr) {
            Ok(ast) => json!({ "ast": ast.to_json() }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        "lex" => match lexer::tokenize(expr) {
            Ok(tokens) => json!({
                "tokens": tokens.iter().map(|t| {
                    let mut o = json!({ "type": t.type_name(), "line": t.line });
                    if let Some(v) = t.value() {
                        o["value"] = v.to_json();
                    }
                    o
                }).collect::<Vec<_>>()
            }),
            Err(e) => json!({ "error": e }),
        },
        "change_in_pattern_match" => {
            let file = case["params"]["changed_file"].as_str().unwrap_or_default();
            let workdir = case["params"]["workdir"].as_str().unwrap_or_default();
            json!(change_in::matches(expr, file, workdir)?)
        }
        other => return Err(format!("unknown case kind {other}")),
    };
    // The reducer tests give ASTs where strings 'true'/'false' are already booleans and
    // literal maps/lists are plain JSON; compare on that common ground.
    if normalize(&got) == normalize(expected) { Ok(()) } else { Err(format!("expected {expected}\n       got {got}")) }
}

/// Lists and maps appear in reducer ASTs both wrapped (`{"list": [..]}`) and bare.
fn normalize(v: &Json) -> Json {
    match v {
        Json::Object(o) if o.len() == 1 && o.contains_key("list") => normalize(&o["list"]),
        Json::Object(o) if o.len() == 1 && o.contains_key("map") => normalize(&o["map"]),
        Json::Object(o) => Json::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect()),
        Json::Array(a) => Json::Array(a.iter().map(normalize).collect()),
        // Floats and integers with the same value are the same number.
        Json::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) => {
            json!(n.as_f64().unwrap_or_default() as i64)
        }
        other => other.clone(),
    }
}

#[test]
fn every_when_case_passes() {
    let path = conformance_dir().join("when_cases.json");
    let cases: Vec<Json> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(cases.len() > 100, "suspiciously few cases in {}", path.display());
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = run_case(case) {
            failures.push(format!("{} ({:?}): {e}", case["id"], case["expr"].as_str().unwrap_or_default()));
        }
    }
    assert!(failures.is_empty(), "{} of {} when cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
