//! The `when` parser: the reference's LALR grammar (`when_parser.yrl`) as recursive descent. It
//! reports a syntax error at the first token that cannot continue a valid prefix, which is the
//! token an LALR parser stops at, with the reference's message for that token.

use std::collections::BTreeMap;

use super::lexer::{Token, TokenKind};
use super::value::{Value, format_float};

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;
/// More `and`/`or` operators than this in one expression are refused: every later pass recurses
/// over the left-deep tree they build.
const MAX_BOOL_OPS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    And,
    Or,
    Eq,
    Ne,
    Match,
    NoMatch,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::And => "and",
            Op::Or => "or",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Match => "=~",
            Op::NoMatch => "!~",
        }
    }

    fn from_text(s: &str) -> Op {
        match s {
            "and" => Op::And,
            "or" => Op::Or,
            "!=" => Op::Ne,
            "=~" => Op::Match,
            "!~" => Op::NoMatch,
            _ => Op::Eq,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Value(Value),
    Keyword(String),
    Call { name: String, params: Vec<Value> },
    Binary { op: Op, left: Box<Expr>, right: Box<Expr> },
}

impl Expr {
    /// Renders the expression as source text (`When.Ast.to_expr`): an operand that is itself a
    /// binary operation is parenthesised.
    pub fn to_expr(&self) -> String {
        match self {
            Expr::Value(v) => v.to_expr(),
            Expr::Keyword(k) => k.clone(),
            Expr::Call { name, params } => {
                let parts: Vec<String> = params.iter().map(Value::to_expr).collect();
                format!("{name}({})", parts.join(", "))
            }
            Expr::Binary { op, left, right } => {
                format!("{} {} {}", left.bracketed(), op.as_str(), right.bracketed())
            }
        }
    }

    fn bracketed(&self) -> String {
        match self {
            Expr::Binary { .. } => format!("({})", self.to_expr()),
            Expr::Value(_) | Expr::Keyword(_) | Expr::Call { .. } => self.to_expr(),
        }
    }

    /// The AST in the JSON form of the reference's test data.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Expr::Value(v) => value_ast_json(v),
            Expr::Keyword(k) => json!({ "keyword": k }),
            Expr::Call { name, params } => {
                json!({ "fun": name, "params": params.iter().map(value_ast_json).collect::<Vec<_>>() })
            }
            Expr::Binary { op, left, right } => {
                json!({ "op": op.as_str(), "left": left.to_json(), "right": right.to_json() })
            }
        }
    }
}

fn value_ast_json(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::List(items) => json!({ "list": items.iter().map(value_ast_json).collect::<Vec<_>>() }),
        Value::Map(map) => {
            let obj: serde_json::Map<String, serde_json::Value> =
                map.iter().map(|(k, v)| (k.clone(), value_ast_json(v))).collect();
            json!({ "map": obj })
        }
        Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) => v.to_json(),
    }
}

pub fn parse(tokens: &[Token]) -> Result<Expr, String> {
    let mut p = Parser { tokens, pos: 0, n_bool_ops: 0 };
    let expr = p.expression(0)?;
    match p.peek() {
        None => Ok(expr),
        Some(t) => Err(p.error_at(t)),
    }
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    n_bool_ops: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Result<&'t Token, String> {
        match self.tokens.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t)
            }
            None => Err(self.end_error()),
        }
    }

    fn end_error(&self) -> String {
        let line = self.tokens.last().map_or(999_999, |t| t.line);
        format!("Syntax error on line {line}. - Invalid or incomplete expression at the end of the line.")
    }

    fn error_at(&self, t: &Token) -> String {
        let line = t.line;
        let what = match &t.kind {
            TokenKind::Operator(s) | TokenKind::BoolOperator(s) | TokenKind::Keyword(s) => {
                return format!("Syntax error on line {line}. - Invalid expression on the left of '{s}' operator.");
            }
            // The reference prints the raw Erlang token for strings, quotes removed.
            TokenKind::Str(s) => format!("{{string,{line},<<{}>>}}", s.replace(['"', '\''], "")),
            TokenKind::LParen => "(".into(),
            TokenKind::RParen => ")".into(),
            TokenKind::LBracket => "[".into(),
            TokenKind::RBracket => "]".into(),
            TokenKind::LBrace => "{".into(),
            TokenKind::RBrace => "}".into(),
            TokenKind::Comma => ",".into(),
            TokenKind::Boolean(b) => b.to_string(),
            TokenKind::Integer(n) => n.to_string(),
            TokenKind::Float(f) => format_float(*f),
            TokenKind::Identifier(s) | TokenKind::MapKey(s) => s.clone(),
        };
        format!("Syntax error on line {line}. - Invalid expression on the left of '{what}'.")
    }

    fn expression(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err(format!("Syntax error - expression nested deeper than {MAX_DEPTH} levels."));
        }
        let mut left = self.term(depth)?;
        while let Some(Token { kind: TokenKind::BoolOperator(op), .. }) = self.peek() {
            self.pos += 1;
            self.n_bool_ops += 1;
            if self.n_bool_ops > MAX_BOOL_OPS {
                return Err(format!(
                    "Syntax error - expression has more than {MAX_BOOL_OPS} 'and'/'or' operators; split it into smaller conditions."
                ));
            }
            let right = self.term(depth)?;
            left = Expr::Binary { op: Op::from_text(op), left: Box::new(left), right: Box::new(right) };
        }
        Ok(left)
    }

    fn term(&mut self, depth: usize) -> Result<Expr, String> {
        let t = self.next()?;
        match &t.kind {
            TokenKind::LParen => {
                let inner = self.expression(depth + 1)?;
                let close = self.next()?;
                match close.kind {
                    TokenKind::RParen => Ok(inner),
                    _ => Err(self.error_at(close)),
                }
            }
            TokenKind::Keyword(k) => {
                let op = self.operator()?;
                let rhs = self.next()?;
                match &rhs.kind {
                    TokenKind::Str(s) => Ok(binary(op, Expr::Keyword(k.clone()), Expr::Value(Value::Str(s.clone())))),
                    _ => Err(self.error_at(rhs)),
                }
            }
            TokenKind::Str(s) => {
                let Some(Token { kind: TokenKind::Operator(op), .. }) = self.peek() else {
                    return Ok(Expr::Value(Value::Str(s.clone())));
                };
                self.pos += 1;
                let rhs = self.next()?;
                let right = match &rhs.kind {
                    TokenKind::Keyword(k) => Expr::Keyword(k.clone()),
                    TokenKind::Str(r) => Expr::Value(Value::Str(r.clone())),
                    _ => return Err(self.error_at(rhs)),
                };
                Ok(binary(Op::from_text(op), Expr::Value(Value::Str(s.clone())), right))
            }
            TokenKind::Boolean(_)
            | TokenKind::Integer(_)
            | TokenKind::Float(_)
            | TokenKind::LBracket
            | TokenKind::LBrace => {
                self.pos -= 1;
                Ok(Expr::Value(self.basic_val(depth)?))
            }
            TokenKind::Identifier(name) => {
                let open = self.next()?;
                if open.kind != TokenKind::LParen {
                    return Err(self.error_at(open));
                }
                let params = self.sequence(depth, &TokenKind::RParen)?;
                let call = Expr::Call { name: name.clone(), params };
                let Some(Token { kind: TokenKind::Operator(op), .. }) = self.peek() else {
                    return Ok(call);
                };
                self.pos += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("Syntax error - expression nested deeper than {MAX_DEPTH} levels."));
                }
                let right = self.term(depth + 1)?;
                Ok(binary(Op::from_text(op), call, right))
            }
            TokenKind::RParen
            | TokenKind::RBracket
            | TokenKind::RBrace
            | TokenKind::Comma
            | TokenKind::Operator(_)
            | TokenKind::BoolOperator(_)
            | TokenKind::MapKey(_) => Err(self.error_at(t)),
        }
    }

    fn operator(&mut self) -> Result<Op, String> {
        let t = self.next()?;
        match &t.kind {
            TokenKind::Operator(op) => Ok(Op::from_text(op)),
            _ => Err(self.error_at(t)),
        }
    }

    fn basic_val(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("Syntax error - expression nested deeper than {MAX_DEPTH} levels."));
        }
        let t = self.next()?;
        match &t.kind {
            TokenKind::Str(s) => Ok(Value::Str(s.clone())),
            TokenKind::Boolean(b) => Ok(Value::Bool(*b)),
            TokenKind::Integer(n) => Ok(Value::Int(*n)),
            TokenKind::Float(f) => Ok(Value::Float(*f)),
            TokenKind::LBracket => Ok(Value::List(self.sequence(depth + 1, &TokenKind::RBracket)?)),
            TokenKind::LBrace => self.map(depth + 1),
            _ => Err(self.error_at(t)),
        }
    }

    /// `close` | basic_val (`,` basic_val)* `close`; the opening token is already read.
    fn sequence(&mut self, depth: usize, close: &TokenKind) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        if self.peek().is_some_and(|t| &t.kind == close) {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.basic_val(depth)?);
            let t = self.next()?;
            match &t.kind {
                TokenKind::Comma => continue,
                k if k == close => return Ok(items),
                _ => return Err(self.error_at(t)),
            }
        }
    }

    fn map(&mut self, depth: usize) -> Result<Value, String> {
        let mut map = BTreeMap::new();
        if self.peek().is_some_and(|t| t.kind == TokenKind::RBrace) {
            self.pos += 1;
            return Ok(Value::Map(map));
        }
        loop {
            let key = self.next()?;
            let TokenKind::MapKey(name) = &key.kind else {
                return Err(self.error_at(key));
            };
            // Duplicate keys: the last one wins.
            map.insert(name.clone(), self.basic_val(depth)?);
            let t = self.next()?;
            match t.kind {
                TokenKind::Comma => continue,
                TokenKind::RBrace => return Ok(Value::Map(map)),
                _ => return Err(self.error_at(t)),
            }
        }
    }
}

fn binary(op: Op, left: Expr, right: Expr) -> Expr {
    Expr::Binary { op, left: Box::new(left), right: Box::new(right) }
}
