//! Tokeniser (§2): literals, operators, `{{name}}` references, and the
//! statement-separation / line-continuation rules of §2.6 (applied as a
//! pass that drops newline tokens that do not end a statement).

use crate::error::{CompileError, ErrorCode, Pos};

/// A token kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifier or word (keywords are identifiers to the lexer).
    Ident(String),
    /// Integer literal.
    Int(i64),
    /// Float literal.
    Float(f64),
    /// Time-span literal, in ms.
    Span(i64),
    /// String literal (escapes resolved).
    Str(String),
    /// `{{name}}`
    Param(String),
    /// Punctuation or operator.
    Op(&'static str),
    /// End of statement (newline or `;`).
    Nl,
    /// End of input.
    Eof,
}

/// A token with the position of its first character.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// Kind.
    pub tok: Tok,
    /// Position.
    pub pos: Pos,
}

const OPS: [&str; 31] = [
    "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "<<", "&&", "||", "+", "-", "*", "/", "<", ">",
    "=", "!", "(", ")", "[", "]", "{", "}", ",", ":", ".", "@", "?", "%",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn span_unit(unit: &str) -> Option<i64> {
    Some(match unit {
        "ms" => 1,
        "second" | "seconds" => 1_000,
        "minute" | "minutes" => 60_000,
        "hour" | "hours" => 3_600_000,
        "day" | "days" => 86_400_000,
        "week" | "weeks" => 604_800_000,
        "month" | "months" => 2_678_400_000,
        "year" | "years" => 31_536_000_000,
        _ => return None,
    })
}

/// Parses a time-span text like `1.5_hours` (also used for header durations).
pub fn parse_span(text: &str) -> Option<i64> {
    let (num, unit) = text.rsplit_once('_')?;
    let mult = span_unit(unit)?;
    let clean: String = num.chars().filter(|c| *c != '_').collect();
    let neg = clean.starts_with('-');
    let digits = clean.trim_start_matches('-');
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let v: f64 = digits.parse().ok()?;
    let ms = (v * mult as f64).round();
    let ms = if neg { -ms } else { ms };
    if ms.abs() > 9.2e18 {
        return None;
    }
    Some(ms as i64)
}

struct Lexer<'a> {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
    out: Vec<Token>,
    _src: &'a str,
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' || (c == '\r' && self.peek(0) != Some('\n')) {
            self.line += 1;
            self.col = 1;
        } else if c != '\r' {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn err(&self, detail: impl Into<String>, pos: Pos) -> CompileError {
        CompileError::new(ErrorCode::SyntaxError, detail, pos)
    }

    fn run(mut self) -> Result<Vec<Token>, CompileError> {
        while let Some(c) = self.peek(0) {
            let pos = self.pos();
            match c {
                '\n' | '\r' | ';' => {
                    self.bump();
                    self.out.push(Token { tok: Tok::Nl, pos });
                }
                ' ' | '\t' => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.peek(0) {
                        if c == '\n' || c == '\r' {
                            break;
                        }
                        self.bump();
                    }
                }
                '"' | '\'' => self.string(c, pos)?,
                c if c.is_ascii_digit() => self.number(pos)?,
                c if is_ident_start(c) => {
                    let mut s = String::new();
                    while let Some(c) = self.peek(0) {
                        if !is_ident_char(c) {
                            break;
                        }
                        s.push(c);
                        self.bump();
                    }
                    self.out.push(Token {
                        tok: Tok::Ident(s),
                        pos,
                    });
                }
                '{' if self.peek(1) == Some('{') => self.param(pos)?,
                _ => {
                    let mut found = None;
                    for op in OPS {
                        if op
                            .chars()
                            .enumerate()
                            .all(|(k, oc)| self.peek(k) == Some(oc))
                        {
                            found = Some(op);
                            break;
                        }
                    }
                    match found {
                        Some(op) if op != "?" && op != "%" && op != "@" => {
                            for _ in 0..op.chars().count() {
                                self.bump();
                            }
                            self.out.push(Token {
                                tok: Tok::Op(op),
                                pos,
                            });
                        }
                        _ => return Err(self.err(format!("unexpected character '{c}'"), pos)),
                    }
                }
            }
        }
        let pos = self.pos();
        self.out.push(Token { tok: Tok::Nl, pos });
        self.out.push(Token { tok: Tok::Eof, pos });
        Ok(self.out)
    }

    fn param(&mut self, pos: Pos) -> Result<(), CompileError> {
        self.bump();
        self.bump();
        let mut name = String::new();
        while let Some(c) = self.peek(0) {
            if c == ' ' || c == '\t' {
                self.bump();
                continue;
            }
            if !is_ident_char(c) {
                break;
            }
            name.push(c);
            self.bump();
        }
        if name.is_empty() || self.peek(0) != Some('}') || self.peek(1) != Some('}') {
            return Err(self.err("malformed '{{name}}' parameter reference", pos));
        }
        self.bump();
        self.bump();
        self.out.push(Token {
            tok: Tok::Param(name),
            pos,
        });
        Ok(())
    }

    fn string(&mut self, quote: char, pos: Pos) -> Result<(), CompileError> {
        self.bump();
        let mut s = String::new();
        loop {
            let here = self.pos();
            match self.bump() {
                None => return Err(self.err("unterminated string", pos)),
                Some(c) if c == quote => break,
                Some('\\') => {
                    let e = self.bump();
                    s.push(match e {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('\\') => '\\',
                        Some('\'') => '\'',
                        Some('"') => '"',
                        Some('/') => '/',
                        None => return Err(self.err("unterminated string", pos)),
                        Some(_) => return Err(self.err("invalid character escape sequence", here)),
                    });
                }
                Some(c) => s.push(c),
            }
        }
        self.out.push(Token {
            tok: Tok::Str(s),
            pos,
        });
        Ok(())
    }

    fn number(&mut self, pos: Pos) -> Result<(), CompileError> {
        let mut text = String::new();
        while let Some(c) = self.peek(0) {
            if c.is_ascii_digit() || c == '_' {
                text.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let mut is_float = false;
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            text.push('.');
            self.bump();
            while let Some(c) = self.peek(0) {
                if c.is_ascii_digit() || c == '_' {
                    text.push(c);
                    self.bump();
                } else {
                    break;
                }
            }
        }
        if self.peek(0).is_some_and(|c| c.is_ascii_alphabetic()) {
            if !text.ends_with('_') {
                return Err(self.err(format!("invalid number '{text}...'"), pos));
            }
            while let Some(c) = self.peek(0) {
                if !is_ident_char(c) {
                    break;
                }
                text.push(c);
                self.bump();
            }
            let ms = parse_span(&text).ok_or_else(|| self.err("invalid time shorthand", pos))?;
            self.out.push(Token {
                tok: Tok::Span(ms),
                pos,
            });
            return Ok(());
        }
        if text.ends_with('_') {
            return Err(self.err("invalid time shorthand", pos));
        }
        let clean: String = text.chars().filter(|c| *c != '_').collect();
        let tok = if is_float {
            Tok::Float(
                clean
                    .parse()
                    .map_err(|_| self.err(format!("invalid number '{text}'"), pos))?,
            )
        } else {
            Tok::Int(
                clean
                    .parse()
                    .map_err(|_| self.err(format!("integer '{text}' is out of range"), pos))?,
            )
        };
        self.out.push(Token { tok, pos });
        Ok(())
    }
}

/// Words after which an expression cannot start (they end an empty `where`).
const NOT_EXPR_START: [&str; 9] = [
    "end", "if", "for", "each_row", "return", "break", "continue", "exit", "elif",
];

fn ends_with_continuation(t: &Tok) -> bool {
    match t {
        Tok::Op(op) => matches!(
            *op,
            "+" | "-"
                | "*"
                | "/"
                | "=="
                | "!="
                | "<"
                | "<="
                | ">"
                | ">="
                | "&&"
                | "||"
                | ","
                | "="
                | "+="
                | "-="
                | "*="
                | "/="
                | "<<"
                | "."
        ),
        Tok::Ident(w) => matches!(
            w.as_str(),
            "and" | "or" | "in" | "contains" | "any" | "not" | "where"
        ),
        _ => false,
    }
}

fn starts_continuation(t: &Tok) -> bool {
    match t {
        Tok::Op(op) => matches!(*op, "&&" | "||" | "."),
        Tok::Ident(w) => w == "and" || w == "or",
        _ => false,
    }
}

/// Tokenises `src` and applies the line-continuation rules, so that the
/// remaining `Nl` tokens are exactly the statement terminators.
pub fn tokenize(src: &str) -> Result<Vec<Token>, CompileError> {
    let raw = Lexer {
        chars: src.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
        out: Vec::new(),
        _src: src,
    }
    .run()?;
    let mut out: Vec<Token> = Vec::with_capacity(raw.len());
    let mut depth: i32 = 0;
    for (k, t) in raw.iter().enumerate() {
        match &t.tok {
            Tok::Op("(" | "[" | "{") => depth += 1,
            Tok::Op(")" | "]" | "}") => depth = (depth - 1).max(0),
            _ => {}
        }
        if t.tok != Tok::Nl {
            out.push(t.clone());
            continue;
        }
        let prev = out.last().map(|p| &p.tok);
        if prev.is_none() || prev == Some(&Tok::Nl) {
            continue;
        }
        let next = raw[k + 1..].iter().find(|n| n.tok != Tok::Nl);
        let keep = if depth > 0 {
            false
        } else if let Some(p) = prev.filter(|p| ends_with_continuation(p)) {
            // `where` followed by a statement word: empty condition (§2.6).
            if *p == Tok::Ident("where".into()) {
                matches!(next.map(|n| &n.tok), Some(Tok::Op("<<")) | Some(Tok::Eof))
                    || matches!(next.map(|n| &n.tok), Some(Tok::Ident(w)) if NOT_EXPR_START.contains(&w.as_str()))
            } else {
                false
            }
        } else {
            !next.is_some_and(|n| starts_continuation(&n.tok))
        };
        if keep {
            out.push(t.clone());
        }
    }
    if out.last().map(|t| &t.tok) != Some(&Tok::Eof) {
        let pos = raw.last().map(|t| t.pos).unwrap_or_default();
        out.push(Token { tok: Tok::Eof, pos });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        tokenize(src)
            .map(|v| v.into_iter().map(|t| t.tok).collect())
            .unwrap_or_default()
    }

    fn id(s: &str) -> Tok {
        Tok::Ident(s.into())
    }

    #[test]
    fn operators_without_spaces() {
        assert_eq!(
            kinds("a=1"),
            vec![id("a"), Tok::Op("="), Tok::Int(1), Tok::Nl, Tok::Eof]
        );
        assert_eq!(
            kinds("x>=3&&b"),
            vec![
                id("x"),
                Tok::Op(">="),
                Tok::Int(3),
                Tok::Op("&&"),
                id("b"),
                Tok::Nl,
                Tok::Eof
            ]
        );
        assert_eq!(kinds("a-1")[1], Tok::Op("-"));
    }

    #[test]
    fn literals() {
        assert_eq!(kinds("1_000")[0], Tok::Int(1000));
        assert_eq!(kinds("3.25")[0], Tok::Float(3.25));
        assert_eq!(kinds("90_seconds")[0], Tok::Span(90_000));
        assert_eq!(kinds("1.5_hours")[0], Tok::Span(5_400_000));
        assert_eq!(kinds("1_500_ms")[0], Tok::Span(1500));
        assert_eq!(kinds("2_days")[0], Tok::Span(172_800_000));
        assert_eq!(kinds("1_month")[0], Tok::Span(2_678_400_000));
        assert_eq!(
            kinds(r#"'a\'b' "c\nd" "x\/y""#)[..3],
            [
                Tok::Str("a'b".into()),
                Tok::Str("c\nd".into()),
                Tok::Str("x/y".into())
            ]
        );
        assert_eq!(
            kinds("\"chapter #4\" # c")[0],
            Tok::Str("chapter #4".into())
        );
        assert_eq!(kinds("{{ min_qty }}")[0], Tok::Param("min_qty".into()));
    }

    #[test]
    fn lexical_errors() {
        let e = tokenize("x = \"abc").err().map(|e| e.detail);
        assert_eq!(e.as_deref(), Some("unterminated string"));
        let e = tokenize("x = \"a\\qb\"").err();
        assert_eq!(
            e.as_ref().map(|e| e.detail.as_str()),
            Some("invalid character escape sequence")
        );
        assert_eq!(e.map(|e| e.column), Some(7));
        let e = tokenize("x = 5_parsecs").err().map(|e| e.detail);
        assert_eq!(e.as_deref(), Some("invalid time shorthand"));
        assert!(tokenize("x = .5").is_err() || kinds("x = .5")[2] == Tok::Op("."));
    }

    #[test]
    fn continuation_rules() {
        // trailing operator continues
        assert_eq!(
            kinds("a = 1 +\n 2")
                .iter()
                .filter(|t| **t == Tok::Nl)
                .count(),
            1
        );
        // leading && continues
        assert_eq!(
            kinds("a = b\n && c")
                .iter()
                .filter(|t| **t == Tok::Nl)
                .count(),
            1
        );
        // open bracket continues
        assert_eq!(
            kinds("a = [1,\n2]\nb = 1")
                .iter()
                .filter(|t| **t == Tok::Nl)
                .count(),
            2
        );
        // where followed by << keeps the line break
        let k = kinds("each_row where\n << x\nend");
        assert_eq!(k[2], Tok::Nl);
        // semicolons separate
        assert_eq!(
            kinds("a = 1; b = 2")
                .iter()
                .filter(|t| **t == Tok::Nl)
                .count(),
            2
        );
        // CRLF and CR line ends
        let t = tokenize("a\r\nb\rc").unwrap_or_default();
        assert_eq!(t[2].pos.line, 2);
        assert_eq!(t[4].pos.line, 3);
    }
}
