//! The `when` condition language of Semaphore (SEMAPHORE.md §2), exact to the reference
//! implementation `renderedtext/when`, quirks included: `and`/`or` share one precedence level and
//! associate to the left, the string literals `'true'`/`'false'` become booleans, an empty subject
//! never matches `=~`, and every error text is the reference's.
//!
//! The pipeline is: [`lexer::tokenize`] → [`parser::parse`] → [`reduce`] (substitute the inputs
//! that are known, compute what can be computed) → truthiness. [`evaluate`] is the whole pipeline
//! with functions called through a [`Functions`] registry; [`list_inputs_json`] and
//! [`reduce_json`] are the JSON contracts of the reference's `when` CLI, used by Semaphore's
//! compiler. `change_in` is one such function; its pattern rules live in [`change_in`], while the
//! git side is supplied by the caller, so this module stays pure.

pub mod change_in;
pub mod lexer;
pub mod parser;
pub mod value;

use std::fmt;

pub use parser::{Expr, Op};
pub use value::Value;

/// The inputs of an evaluation: keyword values (`branch`, `tag`, `pull_request`, `result`,
/// `result_reason`) plus any extra parameters functions read (`working_dir`, `commit_sha`, ...).
/// A `null` value counts as missing.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// An error of the language, with the reference's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhenError {
    Message(String),
    /// A function error that carries a type (the reference's `{:error, {type, message}}`).
    Typed {
        kind: String,
        message: String,
    },
}

impl WhenError {
    pub fn message(&self) -> &str {
        match self {
            WhenError::Message(m) | WhenError::Typed { message: m, .. } => m,
        }
    }
}

impl fmt::Display for WhenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for WhenError {}

/// What a function implementation may fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionError {
    Message(String),
    Typed { kind: String, message: String },
}

/// The function registry an evaluation calls into.
pub trait Functions {
    /// The arities `name` accepts, or `None` when there is no such function.
    fn arities(&self, name: &str) -> Option<Vec<usize>>;
    /// Calls the function with literal arguments and the evaluation's parameters.
    fn call(&self, name: &str, args: &[Value], params: &Params) -> Result<Value, FunctionError>;
}

/// A registry with no functions: the reference library on its own.
pub struct NoFunctions;

impl Functions for NoFunctions {
    fn arities(&self, _name: &str) -> Option<Vec<usize>> {
        None
    }
    fn call(&self, name: &str, _args: &[Value], _params: &Params) -> Result<Value, FunctionError> {
        Err(FunctionError::Message(format!("Function with name '{name}' is not found.")))
    }
}

/// An input an expression needs before it can be reduced to a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Keyword(String),
    Function { name: String, params: Vec<Value> },
}

impl Input {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Input::Keyword(name) => serde_json::json!({ "type": "keyword", "name": name }),
            Input::Function { name, params } => serde_json::json!({
                "type": "fun",
                "name": name,
                "params": params.iter().map(Value::to_json).collect::<Vec<_>>(),
            }),
        }
    }
}

/// A function result supplied to [`reduce`].
#[derive(Debug, Clone)]
pub struct FunctionResult {
    pub name: String,
    pub params: Vec<Value>,
    pub result: Value,
}

/// The known inputs for [`reduce`].
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub keywords: Params,
    pub functions: Vec<FunctionResult>,
}

/// Lexes and parses an expression.
pub fn parse(expr: &str) -> Result<Expr, WhenError> {
    let tokens = lexer::tokenize(expr).map_err(WhenError::Message)?;
    parser::parse(&tokens).map_err(WhenError::Message)
}

/// Substitutes the known inputs and computes every operation whose operands are all known.
/// Returns the reduced expression and the inputs still missing, left to right, duplicates kept.
pub fn reduce(expr: &Expr, inputs: &Inputs) -> Result<(Expr, Vec<Input>), WhenError> {
    let mut missing = Vec::new();
    let reduced = reduce_into(expr, inputs, &mut missing)?;
    Ok((reduced, missing))
}

fn reduce_into(expr: &Expr, inputs: &Inputs, missing: &mut Vec<Input>) -> Result<Expr, WhenError> {
    Ok(match expr {
        Expr::Value(Value::Str(s)) if s == "true" => Expr::Value(Value::Bool(true)),
        Expr::Value(Value::Str(s)) if s == "false" => Expr::Value(Value::Bool(false)),
        Expr::Value(v) => Expr::Value(v.clone()),
        Expr::Keyword(name) => match inputs.keywords.get(name).and_then(Value::from_json) {
            Some(v) => Expr::Value(v),
            None => {
                missing.push(Input::Keyword(name.clone()));
                expr.clone()
            }
        },
        Expr::Call { name, params } => match inputs.functions.iter().find(|f| &f.name == name && f.params == *params) {
            Some(f) => Expr::Value(f.result.clone()),
            None => {
                missing.push(Input::Function { name: name.clone(), params: params.clone() });
                expr.clone()
            }
        },
        Expr::Binary { op, left, right } => {
            let l = reduce_into(left, inputs, missing)?;
            let r = reduce_into(right, inputs, missing)?;
            match (l, r) {
                (Expr::Value(a), Expr::Value(b)) => Expr::Value(apply(*op, &a, &b)?),
                (l, r) => Expr::Binary { op: *op, left: Box::new(l), right: Box::new(r) },
            }
        }
    })
}

fn apply(op: Op, a: &Value, b: &Value) -> Result<Value, WhenError> {
    Ok(Value::Bool(match op {
        Op::And => a.truthy() && b.truthy(),
        Op::Or => a.truthy() || b.truthy(),
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Match => regex_match(op, a, b)?,
        Op::NoMatch => !regex_match(op, a, b)?,
    }))
}

/// `subject =~ pattern`: an unanchored PCRE-style search. An empty subject never matches.
fn regex_match(op: Op, subject: &Value, pattern: &Value) -> Result<bool, WhenError> {
    let op = op.as_str();
    let subject = match subject {
        Value::Str(s) if s.is_empty() => return Ok(false),
        Value::Str(s) => s,
        other => {
            return Err(WhenError::Message(format!(
                "The left side of '{op}' must be a string, but it is the {} {}.",
                other.type_name(),
                other.to_expr()
            )));
        }
    };
    let Value::Str(pattern) = pattern else {
        return Err(WhenError::Message(format!(
            "The right side of '{op}' must be a regular expression string, but it is the {} {}.",
            pattern.type_name(),
            pattern.to_expr()
        )));
    };
    let re = compiled(pattern).map_err(|e| {
        WhenError::Message(format!("Invalid regular expression '{pattern}' on the right of '{op}': {e}."))
    })?;
    re.is_match(subject)
        .map_err(|e| WhenError::Message(format!("Regular expression '{pattern}' could not be run: {e}.")))
}

/// Compiling a pattern costs far more than matching it, and pipelines repeat the same few
/// patterns, so compiled ones are kept per thread (bounded; cleared when full).
fn compiled(pattern: &str) -> Result<std::rc::Rc<fancy_regex::Regex>, fancy_regex::Error> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    thread_local! {
        static CACHE: RefCell<HashMap<String, Rc<fancy_regex::Regex>>> = RefCell::new(HashMap::new());
    }
    if let Some(re) = CACHE.with(|c| c.borrow().get(pattern).cloned()) {
        return Ok(re);
    }
    let re = Rc::new(fancy_regex::Regex::new(pattern)?);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(pattern.to_owned(), Rc::clone(&re));
    });
    Ok(re)
}

/// Evaluates a condition to a boolean (`When.evaluate/3`). In a dry run functions are checked
/// for existence and arity but not called; they evaluate to `false`.
pub fn evaluate(expr: &str, params: &Params, functions: &dyn Functions, dry_run: bool) -> Result<bool, WhenError> {
    let ast = parse(expr)?;
    evaluate_ast(&ast, params, functions, dry_run)
}

/// [`evaluate`] for an expression that is already parsed.
pub fn evaluate_ast(ast: &Expr, params: &Params, functions: &dyn Functions, dry_run: bool) -> Result<bool, WhenError> {
    let (_, needed) = reduce(ast, &Inputs::default())?;
    let mut results = Vec::new();
    for input in needed {
        match input {
            Input::Keyword(name) => {
                if params.get(&name).is_none_or(serde_json::Value::is_null) {
                    return Err(WhenError::Message(format!("Missing value of keyword parameter '{name}'.")));
                }
            }
            Input::Function { name, params: args } => {
                let result = call_function(functions, &name, &args, params, dry_run)?;
                results.push(FunctionResult { name, params: args, result });
            }
        }
    }
    let inputs = Inputs { keywords: params.clone(), functions: results };
    match reduce(ast, &inputs)? {
        (Expr::Value(v), _) => Ok(v.truthy()),
        (other, _) => {
            Err(WhenError::Message(format!("The condition could not be reduced to a value: {}", other.to_expr())))
        }
    }
}

fn call_function(
    functions: &dyn Functions,
    name: &str,
    args: &[Value],
    params: &Params,
    dry_run: bool,
) -> Result<Value, WhenError> {
    let Some(arities) = functions.arities(name) else {
        return Err(WhenError::Message(format!("Function with name '{name}' is not found.")));
    };
    if !arities.contains(&args.len()) {
        return Err(WhenError::Message(format!(
            "Function '{name}' accepts {} parameter(s) and was provided with {}.",
            render_arities(&arities),
            args.len()
        )));
    }
    if dry_run {
        return Ok(Value::Bool(false));
    }
    functions.call(name, args, params).map_err(|e| match e {
        FunctionError::Message(m) => WhenError::Message(format!("Function '{name}' returned error: {m}")),
        FunctionError::Typed { kind, message } => {
            WhenError::Typed { kind, message: format!("Function '{name}' returned error: {message}") }
        }
    })
}

/// `1`, `1 or 2`, `0, 1 or 3`.
fn render_arities(arities: &[usize]) -> String {
    let parts: Vec<String> = arities.iter().map(usize::to_string).collect();
    match parts.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// One entry of `when list-inputs`: the inputs an expression needs, or the error (with the
/// `Syntax error on line 1. - ` prefix removed, exactly as the reference CLI does).
pub fn list_inputs_json(expr: &str) -> serde_json::Value {
    let res = parse(expr).and_then(|ast| reduce(&ast, &Inputs::default()));
    match res {
        Ok((_, inputs)) => serde_json::json!({
            "inputs": inputs.iter().map(Input::to_json).collect::<Vec<_>>(),
            "error": "",
        }),
        Err(e) => {
            let msg = e.message();
            let msg = msg.strip_prefix("Syntax error on line 1. - ").unwrap_or(msg);
            serde_json::json!({ "inputs": [], "error": msg })
        }
    }
}

/// One entry of `when reduce`: `{"expression", "inputs": {"keywords", "functions"}}` →
/// `{"result": <reduced expression text>, "error": ""}` or `{"result": "", "error": msg}`.
pub fn reduce_json(entry: &serde_json::Value) -> serde_json::Value {
    match reduce_entry(entry) {
        Ok(text) => serde_json::json!({ "result": text, "error": "" }),
        Err(msg) => serde_json::json!({ "result": "", "error": msg }),
    }
}

fn reduce_entry(entry: &serde_json::Value) -> Result<String, String> {
    let expr = entry
        .get("expression")
        .and_then(serde_json::Value::as_str)
        .ok_or("each entry needs an \"expression\" string")?;
    let inputs = entry.get("inputs");
    let keywords = match inputs.and_then(|i| i.get("keywords")) {
        None | Some(serde_json::Value::Null) => Params::new(),
        Some(serde_json::Value::Object(map)) => map.clone(),
        Some(_) => return Err("\"inputs.keywords\" must be an object".into()),
    };
    let functions = match inputs.and_then(|i| i.get("functions")) {
        Some(serde_json::Value::Array(items)) => items.iter().map(function_result).collect::<Result<_, _>>()?,
        // The reference's own fixtures sometimes write an empty object here.
        _ => Vec::new(),
    };
    let ast = parse(expr).map_err(|e| e.message().to_owned())?;
    let (reduced, _) = reduce(&ast, &Inputs { keywords, functions }).map_err(|e| e.message().to_owned())?;
    Ok(reduced.to_expr())
}

fn function_result(json: &serde_json::Value) -> Result<FunctionResult, String> {
    let name = json.get("name").and_then(serde_json::Value::as_str).ok_or("each function input needs a \"name\"")?;
    let params = match json.get("params") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(Value::from_json)
            .collect::<Option<Vec<_>>>()
            .ok_or("function params must not contain null")?,
        _ => Vec::new(),
    };
    let result = json
        .get("result")
        .and_then(Value::from_json)
        .ok_or_else(|| format!("function input '{name}' needs a non-null \"result\""))?;
    Ok(FunctionResult { name: name.to_owned(), params, result })
}
