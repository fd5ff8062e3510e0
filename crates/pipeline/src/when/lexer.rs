//! The `when` lexer: the token rules of Semaphore's `when_lexer.xrl`, longest match first and, on
//! equal length, the earlier rule. Error texts are the reference's, byte for byte.

use super::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// `=`, `!=`, `=~`, `!~`.
    Operator(String),
    /// `and`/`or`, lowercased.
    BoolOperator(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    /// One of the five keywords, lowercased.
    Keyword(String),
    Boolean(bool),
    Str(String),
    Integer(i64),
    Float(f64),
    Identifier(String),
    /// `name:`, without the colon.
    MapKey(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub line: usize,
}

impl Token {
    /// The token's category as the reference's test data names it.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            TokenKind::Operator(_) => "operator",
            TokenKind::BoolOperator(_) => "bool_operator",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::LBrace => "{",
            TokenKind::RBrace => "}",
            TokenKind::Comma => ",",
            TokenKind::Keyword(_) => "keyword",
            TokenKind::Boolean(_) => "boolean",
            TokenKind::Str(_) => "string",
            TokenKind::Integer(_) => "integer",
            TokenKind::Float(_) => "float",
            TokenKind::Identifier(_) => "identifier",
            TokenKind::MapKey(_) => "map_key",
        }
    }

    /// The token's value, where it has one, as the reference's test data writes it.
    pub fn value(&self) -> Option<Value> {
        match &self.kind {
            TokenKind::Operator(s)
            | TokenKind::BoolOperator(s)
            | TokenKind::Keyword(s)
            | TokenKind::Str(s)
            | TokenKind::Identifier(s)
            | TokenKind::MapKey(s) => Some(Value::Str(s.clone())),
            TokenKind::Boolean(b) => Some(Value::Bool(*b)),
            TokenKind::Integer(n) => Some(Value::Int(*n)),
            TokenKind::Float(f) => Some(Value::Float(*f)),
            TokenKind::LParen
            | TokenKind::RParen
            | TokenKind::LBracket
            | TokenKind::RBracket
            | TokenKind::LBrace
            | TokenKind::RBrace
            | TokenKind::Comma => None,
        }
    }
}

const KEYWORDS: [&str; 5] = ["branch", "tag", "pull_request", "result", "result_reason"];

fn lex_error(line: usize, chars: &str) -> String {
    format!("Lexical error on line {line}. - Illegal characters: '{chars}'.")
}

/// Splits an expression into tokens, or returns the reference's lexical error text.
pub fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            if c == '\n' {
                line += 1;
            }
            i += 1;
            continue;
        }
        let start_line = line;
        match longest_match(&chars, i) {
            Ok((len, kind)) => {
                if let TokenKind::Str(s) = &kind {
                    line += s.matches('\n').count();
                    // The reference crashes on code points above U+00FF inside strings; refuse them
                    // with an error that says so instead.
                    if s.chars().any(|c| u32::from(c) > 0xFF) {
                        return Err(format!(
                            "{} Characters above U+00FF are not supported inside strings.",
                            lex_error(start_line, &chars[i..i + len].iter().collect::<String>())
                        ));
                    }
                }
                tokens.push(Token { kind, line: start_line });
                i += len;
            }
            Err(consumed) => {
                let text: String = chars[i..i + consumed].iter().collect();
                return Err(lex_error(start_line, &text));
            }
        }
    }
    Ok(tokens)
}

/// Returns the length and kind of the longest token at `i`, or, when no rule accepts anything
/// there, how many characters the automaton read before it failed (the reference reports the
/// characters read plus the one that failed).
fn longest_match(chars: &[char], i: usize) -> Result<(usize, TokenKind), usize> {
    let rest = &chars[i..];
    let mut best: Option<(usize, TokenKind)> = None;
    let mut offer = |len: usize, kind: TokenKind| {
        // Rules are offered in the reference's order, so only a strictly longer match replaces.
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, kind));
        }
    };
    let at = |k: usize| rest.get(k).copied();

    // operator
    match (at(0), at(1)) {
        (Some('='), Some('~')) => offer(2, TokenKind::Operator("=~".into())),
        (Some('!'), Some('=')) => offer(2, TokenKind::Operator("!=".into())),
        (Some('!'), Some('~')) => offer(2, TokenKind::Operator("!~".into())),
        (Some('='), _) => offer(1, TokenKind::Operator("=".into())),
        _ => (),
    }
    // Words: bool operators, keywords, booleans, identifiers and map keys share one scan.
    let word_len = match at(0) {
        Some(c) if c.is_ascii_alphabetic() => {
            1 + rest[1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_' || **c == '-').count()
        }
        _ => 0,
    };
    // Fixed words can be shorter than the identifier run (e.g. `and` inside `android` is not a
    // match because the identifier is longer), so they are offered with their own length.
    let word: String = rest[..word_len].iter().collect();
    for (text, kind) in [
        ("and", TokenKind::BoolOperator("and".into())),
        ("AND", TokenKind::BoolOperator("and".into())),
        ("or", TokenKind::BoolOperator("or".into())),
        ("OR", TokenKind::BoolOperator("or".into())),
    ] {
        if word.starts_with(text) {
            offer(text.len(), kind);
        }
    }
    // punctuation
    let punct = match at(0) {
        Some('(') => Some(TokenKind::LParen),
        Some(')') => Some(TokenKind::RParen),
        Some('[') => Some(TokenKind::LBracket),
        Some(']') => Some(TokenKind::RBracket),
        Some('{') => Some(TokenKind::LBrace),
        Some('}') => Some(TokenKind::RBrace),
        Some(',') => Some(TokenKind::Comma),
        _ => None,
    };
    if let Some(kind) = punct {
        offer(1, kind);
    }
    for kw in KEYWORDS {
        if word.starts_with(kw) {
            offer(kw.len(), TokenKind::Keyword(kw.into()));
        }
        let upper = kw.to_ascii_uppercase();
        if word.starts_with(&upper) {
            offer(kw.len(), TokenKind::Keyword(kw.into()));
        }
    }
    for (text, b) in [("true", true), ("TRUE", true), ("false", false), ("FALSE", false)] {
        if word.starts_with(text) {
            offer(text.len(), TokenKind::Boolean(b));
        }
    }
    // string: ' [^']+ '
    let mut string_fail = None;
    if at(0) == Some('\'') {
        let body = rest[1..].iter().take_while(|c| **c != '\'').count();
        if body > 0 && at(1 + body) == Some('\'') {
            offer(body + 2, TokenKind::Str(rest[1..1 + body].iter().collect()));
        } else if body == 0 {
            // `''`: read the quote, failed on the second one.
            string_fail = Some(if at(1).is_some() { 2 } else { 1 });
        } else {
            // Unterminated: read to the end of input.
            string_fail = Some(1 + body);
        }
    }
    // integer: -?0 | -?[1-9][0-9]*   float: -?[1-9][0-9]*\.[0-9]+
    let sign = usize::from(at(0) == Some('-'));
    let mut number_fail = None;
    match at(sign) {
        Some('0') => {
            offer(sign + 1, TokenKind::Integer(0));
        }
        Some(c) if c.is_ascii_digit() => {
            let digits = rest[sign..].iter().take_while(|c| c.is_ascii_digit()).count();
            let int_text: String = rest[..sign + digits].iter().collect();
            match int_text.parse::<i64>() {
                Ok(n) => offer(sign + digits, TokenKind::Integer(n)),
                Err(_) => number_fail = Some(sign + digits),
            }
            if at(sign + digits) == Some('.') {
                let frac = rest[sign + digits + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if frac > 0 {
                    let len = sign + digits + 1 + frac;
                    let text: String = rest[..len].iter().collect();
                    if let Ok(f) = text.parse::<f64>() {
                        offer(len, TokenKind::Float(f));
                    }
                }
            }
        }
        _ => {
            if sign == 1 {
                // `-` read, the next character failed.
                number_fail = Some(if at(1).is_some() { 2 } else { 1 });
            }
        }
    }
    // identifier and map_key
    if word_len > 0 {
        offer(word_len, TokenKind::Identifier(word.clone()));
        if at(word_len) == Some(':') {
            offer(word_len + 1, TokenKind::MapKey(word));
        }
    }
    // `!` not followed by `=`/`~`: read one character, failed on the next.
    let bang_fail = (at(0) == Some('!') && best.is_none()).then(|| if at(1).is_some() { 2 } else { 1 });

    match best {
        Some(found) => Ok(found),
        None => Err(string_fail.or(number_fail).or(bang_fail).unwrap_or(1)),
    }
}
