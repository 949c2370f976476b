//! Re-event trigger scripts (rest spec 3.10). OSL has no user functions, so
//! a trigger script is a list of *functions*, each opened by a header line
//!
//! ```text
//! @function <name>
//! ```
//!
//! and compiled as its own program. `on_insert` must be one of them: it
//! runs for a customer after an insert touched them. Inside a function:
//!
//! - `emit(text)` ends the run with a message: it is `return(text)` under
//!   another name, so a plain `return`/`exit` ends without one;
//! - `schedule(span, "fn")` asks for function `fn` (a text literal naming a
//!   function of the same script) to run for this customer `span` ms from
//!   now. It is compiled to `debug(list("__schedule", span, "fn"))` and read
//!   back from the run's debug list by [`effects`], so the interpreter needs
//!   no new built-in.
//!
//! The rewrite works on tokens (never inside strings or comments).

use crate::compile::{compile_with, CompileOptions, Program};
use crate::error::{CompileError, ErrorCode, Pos};
use crate::lexer::{tokenize, Tok};
use crate::schema::{Params, Schema, ScriptKind};
use crate::value::Value;
use crate::view::RunOutcome;

/// The entry function every trigger script defines.
pub const ENTRY: &str = "on_insert";
/// First element of the debug list a `schedule` call leaves.
const SCHEDULE_MARK: &str = "__schedule";

/// A compiled trigger function.
pub struct TriggerFunction {
    /// Its name.
    pub name: String,
    /// Its program.
    pub program: Program,
}

/// What one run of a trigger function asked for.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// The emitted message, if any.
    pub emit: Option<String>,
    /// Runs to schedule: (delay ms, function name).
    pub schedule: Vec<(i64, String)>,
}

fn valid_function_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase() || f == '_')
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_')
        && n.len() <= 64
}

fn error(detail: String, line: u32) -> CompileError {
    CompileError::new(ErrorCode::SyntaxError, detail, Pos { line, col: 1 })
}

/// Compiles a trigger script into its functions (in order of definition).
pub fn compile_trigger(
    source: &str,
    schema: &Schema,
) -> Result<Vec<TriggerFunction>, CompileError> {
    // (name, header line index, body lines)
    let mut parts: Vec<(String, u32, Vec<&str>)> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("@function") {
            let name = rest.trim();
            if !rest.starts_with(char::is_whitespace) || !valid_function_name(name) {
                return Err(error(
                    format!(
                        "bad function header '{t}': expected @function <name> ([a-z_][a-z0-9_]*)"
                    ),
                    i as u32 + 1,
                ));
            }
            if parts.iter().any(|p| p.0 == name) {
                return Err(error(
                    format!("function '{name}' is defined twice"),
                    i as u32 + 1,
                ));
            }
            parts.push((name.to_string(), i as u32 + 1, Vec::new()));
        } else if let Some(p) = parts.last_mut() {
            p.2.push(line);
        } else if !t.is_empty() && !t.starts_with('#') {
            return Err(error(
                "code outside of a function (start with @function on_insert)".into(),
                i as u32 + 1,
            ));
        }
    }
    if !parts.iter().any(|p| p.0 == ENTRY) {
        return Err(error(
            format!("a trigger script must define @function {ENTRY}"),
            1,
        ));
    }
    let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    let mut out = Vec::new();
    for (name, header, body) in &parts {
        let text = body.join("\n");
        let opts = CompileOptions {
            kind: ScriptKind::Segment,
            line_offset: *header,
            section: Some(name.clone()),
        };
        let rewritten = match rewrite(&text, &names) {
            Ok(r) => r,
            Err((detail, line)) => return Err(error(detail, line + header)),
        };
        let program = compile_with(&rewritten, schema, &Params::new(), &opts)?;
        out.push(TriggerFunction {
            name: name.clone(),
            program,
        });
    }
    Ok(out)
}

/// Rewrites `emit(` and `schedule(..., "fn")` calls of one function body.
/// Errors: (detail, 1-based line in the body).
fn rewrite(body: &str, functions: &[&str]) -> Result<String, (String, u32)> {
    // A body that does not tokenize is left to the compiler to report.
    let Ok(toks) = tokenize(body) else {
        return Ok(body.to_string());
    };
    // (line, col, chars removed, text inserted)
    let mut edits: Vec<(u32, u32, usize, String)> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let Tok::Ident(word) = &t.tok else { continue };
        if toks.get(i + 1).map(|n| &n.tok) != Some(&Tok::Op("(")) {
            continue;
        }
        match word.as_str() {
            "emit" => edits.push((t.pos.line, t.pos.col, 4, "return".into())),
            "schedule" => {
                let mut depth = 0;
                let mut close = None;
                for (j, u) in toks.iter().enumerate().skip(i + 1) {
                    match u.tok {
                        Tok::Op("(") => depth += 1,
                        Tok::Op(")") => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let usage = || {
                    (
                        "schedule needs (span, \"function name\")".to_string(),
                        t.pos.line,
                    )
                };
                let j = close.ok_or_else(usage)?;
                let (Some(Tok::Str(target)), Some(Tok::Op(","))) = (
                    toks.get(j - 1).map(|x| &x.tok),
                    toks.get(j.wrapping_sub(2)).map(|x| &x.tok),
                ) else {
                    return Err(usage());
                };
                if !functions.contains(&target.as_str()) {
                    return Err((
                        format!("schedule: function '{target}' is not defined in this script"),
                        t.pos.line,
                    ));
                }
                let open = &toks[i + 1].pos;
                edits.push((t.pos.line, t.pos.col, 8, "debug".into()));
                edits.push((
                    open.line,
                    open.col,
                    1,
                    format!("(list(\"{SCHEDULE_MARK}\", "),
                ));
                let end = &toks[j].pos;
                edits.push((end.line, end.col, 0, ")".into()));
            }
            _ => {}
        }
    }
    let mut lines: Vec<String> = body.lines().map(str::to_string).collect();
    // Right to left within a line, so earlier columns stay valid.
    edits.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    for (line, col, remove, insert) in edits {
        let Some(l) = lines.get_mut(line as usize - 1) else {
            continue;
        };
        let start = l
            .char_indices()
            .nth(col as usize - 1)
            .map_or(l.len(), |(b, _)| b);
        let end = l[start..]
            .char_indices()
            .nth(remove)
            .map_or(l.len(), |(b, _)| start + b);
        l.replace_range(start..end, &insert);
    }
    Ok(lines.join("\n"))
}

/// Reads a finished run's message and schedule requests.
pub fn effects(outcome: &RunOutcome) -> Effects {
    let emit = match &outcome.value {
        Value::Nil | Value::Bool(false) => None,
        Value::Text(t) => Some(t.to_string()),
        v => Some(v.to_text()),
    };
    let mut schedule = Vec::new();
    for d in &outcome.debug {
        let Value::List(items) = d else { continue };
        if let [Value::Text(mark), delay, Value::Text(f)] = &items[..] {
            if &**mark == SCHEDULE_MARK {
                let ms = match delay {
                    Value::Int(i) => *i,
                    Value::Float(f) => *f as i64,
                    _ => continue,
                };
                schedule.push((ms.max(0), f.to_string()));
            }
        }
    }
    Effects { emit, schedule }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_emit_and_schedule_by_tokens() {
        let body = "if row_count > 1 # emit(\"no\")\n  schedule(2_days, \"later\")\n  emit(\"x emit(y)\")\nend";
        let out = rewrite(body, &["on_insert", "later"]).unwrap();
        assert_eq!(
            out,
            "if row_count > 1 # emit(\"no\")\n  debug(list(\"__schedule\", 2_days, \"later\"))\n  return(\"x emit(y)\")\nend"
        );
        let err = rewrite("schedule(1_hours, \"nope\")", &["on_insert"]).unwrap_err();
        assert!(err.0.contains("'nope'"), "{err:?}");
        assert!(rewrite("schedule(\"on_insert\")", &["on_insert"]).is_err());
    }
}
