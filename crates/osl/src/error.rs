//! Compile and runtime errors (§13): spec message codes, 1-based positions
//! and the offending source line, renderable as the §13.3 JSON shape.

use serde_json::{json, Map, Value as J};
use std::fmt;

/// The `message` vocabulary of §13.2 used by OSL errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// `syntax_error` (10000)
    SyntaxError,
    /// `template_missing_var` (10005)
    TemplateMissingVar,
    /// `property_not_found_schema` (10006)
    PropertyNotFoundSchema,
    /// `sdk_param_count` (10016)
    SdkParamCount,
    /// `date_parse_error - expecting ISO 8601` (10019)
    DateParseError,
    /// `iteration error` (10024)
    IterationError,
    /// `set_math_param_invalid` (10025)
    SetMathParamInvalid,
    /// `run_time_exception_triggered` (10027)
    RunTimeExceptionTriggered,
    /// `break ## to deep for current nest level` (10030)
    BreakDepthTooDeep,
}

impl ErrorCode {
    /// The `message` text.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::SyntaxError => "syntax_error",
            ErrorCode::TemplateMissingVar => "template_missing_var",
            ErrorCode::PropertyNotFoundSchema => "property_not_found_schema",
            ErrorCode::SdkParamCount => "sdk_param_count",
            ErrorCode::DateParseError => "date_parse_error - expecting ISO 8601",
            ErrorCode::IterationError => "iteration error",
            ErrorCode::SetMathParamInvalid => "set_math_param_invalid",
            ErrorCode::RunTimeExceptionTriggered => "run_time_exception_triggered",
            ErrorCode::BreakDepthTooDeep => "break ## to deep for current nest level",
        }
    }

    /// The numeric `code`.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::SyntaxError => 10000,
            ErrorCode::TemplateMissingVar => 10005,
            ErrorCode::PropertyNotFoundSchema => 10006,
            ErrorCode::SdkParamCount => 10016,
            ErrorCode::DateParseError => 10019,
            ErrorCode::IterationError => 10024,
            ErrorCode::SetMathParamInvalid => 10025,
            ErrorCode::RunTimeExceptionTriggered => 10027,
            ErrorCode::BreakDepthTooDeep => 10030,
        }
    }
}

/// A 1-based source position (column in Unicode characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// Line, 1-based.
    pub line: u32,
    /// Column, 1-based.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A script that does not compile (class `parse`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Message code.
    pub code: ErrorCode,
    /// Specific message (the spec's recommended texts).
    pub detail: String,
    /// Line, 1-based, relative to the whole request body.
    pub line: u32,
    /// Column, 1-based.
    pub column: u32,
    /// The offending source line, trimmed.
    pub additional: String,
    /// Section name for sectioned requests.
    pub section: Option<String>,
}

impl CompileError {
    /// A syntax error at `pos` (source line filled in later by the compiler).
    pub fn new(code: ErrorCode, detail: impl Into<String>, pos: Pos) -> CompileError {
        CompileError {
            code,
            detail: detail.into(),
            line: pos.line,
            column: pos.col,
            additional: String::new(),
            section: None,
        }
    }

    /// The §13.3 JSON (`{"error": {...}}`).
    pub fn to_json(&self) -> J {
        error_json(
            "parse",
            self.code,
            &self.detail,
            &self.additional,
            self.line,
            self.column,
            self.section.as_deref(),
        )
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}:{}: {}",
            self.code.message(),
            self.line,
            self.column,
            self.detail
        )
    }
}

impl std::error::Error for CompileError {}

/// A fault while running a script for one customer (class `run_time`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    /// Message code.
    pub code: ErrorCode,
    /// Specific message.
    pub detail: String,
    /// Line of the failing operation, 1-based.
    pub line: u32,
    /// Column, 1-based.
    pub column: u32,
    /// The source line, trimmed.
    pub additional: String,
    /// Section name for sectioned requests.
    pub section: Option<String>,
}

impl RuntimeError {
    /// The §13.3 JSON (`{"error": {...}}`).
    pub fn to_json(&self) -> J {
        error_json(
            "run_time",
            self.code,
            &self.detail,
            &self.additional,
            self.line,
            self.column,
            self.section.as_deref(),
        )
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}:{}: {}",
            self.code.message(),
            self.line,
            self.column,
            self.detail
        )
    }
}

impl std::error::Error for RuntimeError {}

fn error_json(
    class: &str,
    code: ErrorCode,
    detail: &str,
    additional: &str,
    line: u32,
    column: u32,
    section: Option<&str>,
) -> J {
    let mut m = Map::new();
    m.insert("class".into(), J::from(class));
    m.insert("message".into(), J::from(code.message()));
    m.insert("detail".into(), J::from(detail));
    if !additional.is_empty() {
        m.insert("additional".into(), J::from(additional));
    }
    m.insert("code".into(), J::from(code.code()));
    m.insert("line".into(), J::from(line));
    m.insert("column".into(), J::from(column));
    if let Some(s) = section {
        m.insert("section".into(), J::from(s));
    }
    json!({ "error": J::Object(m) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_error_json_shape() {
        let mut e = CompileError::new(
            ErrorCode::SyntaxError,
            ".is( <logic> ) requires a comparator",
            Pos { line: 1, col: 31 },
        );
        e.additional = "each_row.limit(2) where event.is(\"order\")".into();
        let j = e.to_json();
        assert_eq!(j["error"]["class"], "parse");
        assert_eq!(j["error"]["message"], "syntax_error");
        assert_eq!(j["error"]["code"], 10000);
        assert_eq!(j["error"]["line"], 1);
        assert_eq!(j["error"]["column"], 31);
        assert!(j["error"].get("section").is_none());
    }
}
