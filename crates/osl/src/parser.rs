//! Recursive-descent parser for Appendix A. Names are resolved while
//! parsing (reserved word > event property > customer property > user
//! variable, §2.3), and the static rules (modifier combinations, arities,
//! loop-control placement, script-kind restrictions, select validation,
//! nesting limit) are checked here so every compile error carries the
//! position of the offending token. The flow-insensitive "used but never
//! assigned" check (§6.9) runs in `compile.rs` over the reads and
//! assignments recorded here.

use crate::ast::*;
use crate::error::{CompileError, ErrorCode, Pos};
use crate::functions::Func;
use crate::lexer::{Tok, Token};
use crate::result_tree::{Column, ColumnAgg, Dedup};
use crate::schema::{Params, Schema, ScriptKind};
use crate::value::{ArithOp, CmpOp, Key, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Deepest block nesting accepted (§6.8).
pub const MAX_NESTING: u32 = 64;
/// Bound on expression nesting plus operator-chain length, so that the
/// recursive parser, evaluator and destructor cannot exhaust the stack.
pub const MAX_EXPR_DEPTH: u32 = 256;
/// Depth cost of one bracket/argument nesting level (each one recurses
/// through every precedence level of the parser).
const NESTING_COST: u32 = 8;
/// Most group levels of a push (§6.6).
pub const MAX_GROUPS: usize = 8;

const STATEMENT_WORDS: &[&str] = &[
    "if", "elif", "elsif", "else", "end", "for", "in", "each_row", "where", "select", "break",
    "continue", "exit", "return", "contains", "any", "not", "and", "or", "sort", "tally",
];
const LITERAL_WORDS: &[&str] = &["true", "false", "nil", "True", "False", "None"];
const AGG_WORDS: &[&str] = &["sum", "avg", "min", "max", "count", "dcount", "test", "row"];

/// True for reserved words (Appendix B), including `__` names.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("__")
        || STATEMENT_WORDS.contains(&name)
        || LITERAL_WORDS.contains(&name)
        || AGG_WORDS.contains(&name)
        || Func::lookup(name).is_some()
}

/// What the parser hands to the compiler.
pub(crate) struct Parsed {
    pub stmts: Vec<Stmt>,
    pub columns: Vec<Column>,
    pub has_select: bool,
    pub names: Vec<String>,
    pub assigned: Vec<bool>,
    pub reads: Vec<(u32, Pos)>,
    pub texts: Vec<Arc<str>>,
    pub uses_each_value: bool,
}

/// Slot layout fixed before parsing: customer properties, parameters, `each_value`.
pub(crate) struct Slots {
    pub names: Vec<String>,
    pub by_name: HashMap<String, u32>,
    pub assigned: Vec<bool>,
}

pub(crate) struct Parser<'a> {
    toks: Vec<Token>,
    i: usize,
    schema: &'a Schema,
    params: &'a Params,
    kind: ScriptKind,
    slots: Slots,
    reads: Vec<(u32, Pos)>,
    loop_depth: u32,
    block_depth: u32,
    expr_depth: u32,
    texts: Vec<Arc<str>>,
    each_value_slot: u32,
    uses_each_value: bool,
}

type PResult<T> = Result<T, CompileError>;

fn err<T>(detail: impl Into<String>, pos: Pos) -> PResult<T> {
    Err(CompileError::new(ErrorCode::SyntaxError, detail, pos))
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => s.clone(),
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Span(s) => format!("{s}ms"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Param(p) => format!("{{{{{p}}}}}"),
        Tok::Op(o) => (*o).to_string(),
        Tok::Nl => "end of line".into(),
        Tok::Eof => "end of script".into(),
    }
}

impl<'a> Parser<'a> {
    pub(crate) fn new(
        toks: Vec<Token>,
        schema: &'a Schema,
        params: &'a Params,
        kind: ScriptKind,
        slots: Slots,
        each_value_slot: u32,
    ) -> Parser<'a> {
        Parser {
            toks,
            i: 0,
            schema,
            params,
            kind,
            slots,
            reads: Vec::new(),
            loop_depth: 0,
            block_depth: 0,
            expr_depth: 0,
            texts: Vec::new(),
            each_value_slot,
            uses_each_value: false,
        }
    }

    // ----- token helpers -------------------------------------------------

    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> &Tok {
        self.toks.get(self.i + k).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> Pos {
        self.toks
            .get(self.i)
            .or(self.toks.last())
            .map(|t| t.pos)
            .unwrap_or_default()
    }

    fn advance(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> PResult<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            err(
                format!("expecting '{op}' but found '{}'", tok_text(self.peek())),
                self.pos(),
            )
        }
    }

    fn at_end_of_statement(&self) -> bool {
        matches!(self.peek(), Tok::Nl | Tok::Eof)
    }

    fn expect_end_of_statement(&mut self) -> PResult<()> {
        match self.peek() {
            Tok::Nl => {
                self.i += 1;
                Ok(())
            }
            Tok::Eof => Ok(()),
            t => err(format!("unexpected '{}'", tok_text(t)), self.pos()),
        }
    }

    fn skip_nl(&mut self) {
        while *self.peek() == Tok::Nl {
            self.i += 1;
        }
    }

    /// Skips an optional Python-style `:` and requires the end of the header line.
    fn end_header(&mut self) -> PResult<()> {
        self.eat_op(":");
        self.expect_end_of_statement()
    }

    fn text_const(&mut self, t: &Arc<str>) -> u32 {
        if let Some(i) = self.texts.iter().position(|x| x == t) {
            return i as u32;
        }
        self.texts.push(t.clone());
        (self.texts.len() - 1) as u32
    }

    // ----- names -----------------------------------------------------------

    fn event_prop(&mut self, name: &str) -> Option<PropRef> {
        let p = match name {
            "stamp" => PropRef::Stamp,
            "event" => PropRef::Event,
            "id" => PropRef::Id,
            "session" => PropRef::Session,
            _ => {
                let d = self.schema.find(name)?;
                if d.is_customer {
                    return None;
                }
                PropRef::User {
                    index: d.index,
                    kind: d.kind,
                    is_set: d.is_set,
                }
            }
        };
        Some(p)
    }

    fn var_slot(&mut self, name: &str) -> u32 {
        if let Some(s) = self.slots.by_name.get(name) {
            return *s;
        }
        let s = self.slots.names.len() as u32;
        self.slots.names.push(name.to_string());
        self.slots.assigned.push(false);
        self.slots.by_name.insert(name.to_string(), s);
        s
    }

    fn read_var(&mut self, name: &str, pos: Pos) -> u32 {
        let s = self.var_slot(name);
        if s == self.each_value_slot {
            self.uses_each_value = true;
        }
        self.reads.push((s, pos));
        s
    }

    // ----- script ------------------------------------------------------------

    pub(crate) fn parse_script(mut self) -> PResult<Parsed> {
        self.skip_nl();
        let mut columns = Vec::new();
        let mut has_select = false;
        if self.is_word("select") {
            if self.kind != ScriptKind::Event {
                return err("'select' is only valid in event queries", self.pos());
            }
            columns = self.parse_select()?;
            has_select = true;
        }
        let stmts = self.parse_block(&[])?;
        if !matches!(self.peek(), Tok::Eof) {
            let w = tok_text(self.peek());
            return err(
                format!("unexpected '{w}' (no open block to close)"),
                self.pos(),
            );
        }
        if !has_select {
            columns.push(Column {
                alias: "id".into(),
                agg: ColumnAgg::Count,
                prop: PropRef::Id,
                dedup: Dedup::Customer,
                value_kind: PropKind::Text,
            });
        }
        Ok(Parsed {
            stmts,
            columns,
            has_select,
            names: self.slots.names,
            assigned: self.slots.assigned,
            reads: self.reads,
            texts: self.texts,
            uses_each_value: self.uses_each_value,
        })
    }

    fn select_prop(&mut self) -> PResult<(PropRef, String)> {
        let pos = self.pos();
        let Tok::Ident(name) = self.advance() else {
            return err("expecting a table property", pos);
        };
        let p = match name.as_str() {
            "stamp" => PropRef::Stamp,
            "event" => PropRef::Event,
            "id" => PropRef::Id,
            "session" => PropRef::Session,
            _ => match self.schema.find(&name) {
                Some(d) if d.is_customer => return err("expecting a table property", pos),
                Some(d) => PropRef::User {
                    index: d.index,
                    kind: d.kind,
                    is_set: d.is_set,
                },
                None => {
                    return Err(CompileError::new(
                        ErrorCode::PropertyNotFoundSchema,
                        format!("property '{name}' not found in table"),
                        pos,
                    ))
                }
            },
        };
        Ok((p, name))
    }

    fn parse_select(&mut self) -> PResult<Vec<Column>> {
        self.advance();
        self.expect_end_of_statement()?;
        let mut cols: Vec<Column> = Vec::new();
        loop {
            self.skip_nl();
            let pos = self.pos();
            let word = match self.peek() {
                Tok::Ident(w) => w.clone(),
                Tok::Eof => return err("expecting 'end' to close 'select'", pos),
                t => return err(format!("unexpected '{}' in 'select'", tok_text(t)), pos),
            };
            if word == "end" {
                self.advance();
                self.expect_end_of_statement()?;
                break;
            }
            self.advance();
            let agg = match word.as_str() {
                "count" | "dist_count_person" => ColumnAgg::Count,
                "sum" => ColumnAgg::Sum,
                "min" => ColumnAgg::Min,
                "max" => ColumnAgg::Max,
                "avg" => ColumnAgg::Avg,
                _ => return err("expecting an aggregate in `select` statement", pos),
            };
            let (prop, pname) = self.select_prop()?;
            let mut alias = pname.clone();
            let mut dedup = match prop {
                PropRef::Id => Dedup::Customer,
                PropRef::Session => Dedup::Session,
                _ => Dedup::Row,
            };
            if word == "dist_count_person" {
                dedup = Dedup::Key(prop);
            }
            let mut opts_seen: Vec<&str> = Vec::new();
            loop {
                let opt = match self.peek() {
                    Tok::Ident(w) if matches!(w.as_str(), "as" | "with" | "key" | "all") => {
                        if w == "key" {
                            "with"
                        } else if w == "as" {
                            "as"
                        } else if w == "with" {
                            "with"
                        } else {
                            "all"
                        }
                    }
                    _ => break,
                };
                if opts_seen.contains(&opt) {
                    return err(format!("'{opt}' given twice in `select` entry"), self.pos());
                }
                opts_seen.push(opt);
                self.advance();
                match opt {
                    "as" => {
                        let apos = self.pos();
                        let Tok::Ident(a) = self.advance() else {
                            return err("`as` in `select` must be followed by a name", apos);
                        };
                        if self.schema.find(&a).is_some()
                            || matches!(a.as_str(), "stamp" | "event" | "id" | "session")
                        {
                            return err(
                                "`as` portion of `select` statement cannot be a table property",
                                apos,
                            );
                        }
                        alias = a;
                    }
                    "with" => {
                        let (k, _) = self.select_prop()?;
                        if !opts_seen.contains(&"all") {
                            dedup = Dedup::Key(k);
                        }
                    }
                    _ => dedup = Dedup::All,
                }
            }
            if cols.iter().any(|c| c.alias == alias) {
                return err("`as` name in `select` already in use", pos);
            }
            let (value_kind, count_only) = match prop {
                PropRef::Stamp => (PropKind::Int, false),
                PropRef::Session => (PropKind::Int, true),
                PropRef::Event | PropRef::Id => (PropKind::Text, true),
                PropRef::User { kind, is_set, .. } => (kind, is_set || kind == PropKind::Text),
            };
            if count_only && agg != ColumnAgg::Count {
                return err(
                    format!(
                        "aggregate '{word}' is not allowed on property '{pname}' (only 'count')"
                    ),
                    pos,
                );
            }
            cols.push(Column {
                alias,
                agg,
                prop,
                dedup,
                value_kind,
            });
            if !self.at_end_of_statement() {
                return err(
                    format!("unexpected '{}' in `select` entry", tok_text(self.peek())),
                    self.pos(),
                );
            }
        }
        Ok(cols)
    }

    // ----- statements ----------------------------------------------------------

    /// Parses statements until `end`/`elif`/`elsif`/`else` or the end of input.
    fn parse_block(&mut self, _ctx: &[&str]) -> PResult<Vec<Stmt>> {
        let mut out = Vec::new();
        loop {
            self.skip_nl();
            match self.peek() {
                Tok::Eof => break,
                Tok::Ident(w) if matches!(w.as_str(), "end" | "elif" | "elsif" | "else") => break,
                _ => {}
            }
            out.push(self.parse_statement()?);
        }
        Ok(out)
    }

    fn enter_block(&mut self, pos: Pos) -> PResult<()> {
        self.block_depth += 1;
        if self.block_depth > MAX_NESTING {
            return err(
                format!("blocks are nested deeper than {MAX_NESTING} levels"),
                pos,
            );
        }
        Ok(())
    }

    fn expect_end(&mut self, what: &str, open: Pos) -> PResult<()> {
        if self.is_word("end") {
            self.advance();
            self.expect_end_of_statement()
        } else {
            err(format!("expecting 'end' to close '{what}'"), open)
        }
    }

    fn parse_statement(&mut self) -> PResult<Stmt> {
        let pos = self.pos();
        if self.eat_op("<<") {
            return self.parse_push(pos, false);
        }
        let word = match self.peek() {
            Tok::Ident(w) => Some(w.clone()),
            _ => None,
        };
        let stmt = match word.as_deref() {
            Some("select") => {
                return err(
                    if self.kind == ScriptKind::Event {
                        "'select' must come before every other statement (only one 'select' block is allowed)"
                    } else {
                        "'select' is only valid in event queries"
                    },
                    pos,
                )
            }
            Some("sort") => {
                return err(
                    "'sort' blocks are not supported: use the 'sort=' and 'order=' URL parameters",
                    pos,
                )
            }
            Some("if") => return self.parse_if(),
            Some("for") => return self.parse_for(),
            Some("each_row") => return self.parse_each_row(),
            Some("tally") => {
                self.advance();
                if !self.is_op("(") {
                    return err("function call for 'tally' requires parameters", pos);
                }
                return self.parse_push(pos, true);
            }
            Some("break") => {
                self.advance();
                self.parse_break(pos)?
            }
            Some("continue") => {
                self.advance();
                if self.loop_depth == 0 {
                    return err("'continue' outside of a loop", pos);
                }
                self.empty_parens()?;
                Stmt::Continue
            }
            Some("exit") => {
                self.advance();
                self.empty_parens()?;
                Stmt::Exit
            }
            Some("return") => {
                self.advance();
                let mut value = None;
                if self.eat_op("(") {
                    if !self.is_op(")") {
                        value = Some(self.parse_expr()?);
                    }
                    if self.is_op(",") {
                        return err("'return' takes at most one parameter", self.pos());
                    }
                    self.expect_op(")")?;
                }
                Stmt::Return(value)
            }
            _ if self.looks_like_assignment() => self.parse_assignment()?,
            _ => {
                let e = self.parse_expr()?;
                if matches!(self.peek(), Tok::Op("=" | "+=" | "-=" | "*=" | "/=")) {
                    return err("left side of an assignment must be a user variable", pos);
                }
                Stmt::Expr(e)
            }
        };
        self.expect_end_of_statement()?;
        Ok(stmt)
    }

    fn empty_parens(&mut self) -> PResult<()> {
        if self.eat_op("(") {
            self.expect_op(")")?;
        }
        Ok(())
    }

    fn parse_push(&mut self, pos: Pos, tally: bool) -> PResult<Stmt> {
        match self.kind {
            ScriptKind::Event => {}
            ScriptKind::Segment => return err("'<<' is not allowed in segment scripts", pos),
            ScriptKind::Histogram => {
                return err(
                    "histogram queries should not call 'tally'. They should 'return' the value to store.",
                    pos,
                )
            }
        }
        if tally {
            self.expect_op("(")?;
        }
        let mut groups = Vec::new();
        let end_tok = |p: &Self| {
            if tally {
                p.is_op(")")
            } else {
                p.at_end_of_statement()
            }
        };
        if end_tok(self) {
            return err("expecting at least one group after `<<`", pos);
        }
        loop {
            groups.push(self.parse_expr()?);
            if !self.eat_op(",") {
                break;
            }
        }
        if tally {
            self.expect_op(")")?;
        }
        if groups.len() > MAX_GROUPS {
            return err(format!("at most {MAX_GROUPS} groups may follow `<<`"), pos);
        }
        self.expect_end_of_statement()?;
        Ok(Stmt::Push {
            groups,
            pos,
            memo: None,
            literal: None,
        })
    }

    fn parse_break(&mut self, pos: Pos) -> PResult<Stmt> {
        if self.loop_depth == 0 {
            return err("'break' outside of a loop", pos);
        }
        let depth = self.loop_depth;
        if !self.eat_op("(") {
            return Ok(Stmt::Break(BreakDepth::Fixed(1), pos));
        }
        if self.eat_op(")") {
            return Ok(Stmt::Break(BreakDepth::Fixed(1), pos));
        }
        let apos = self.pos();
        let e = self.parse_expr()?;
        self.expect_op(")")?;
        let d = match &e {
            Expr::Lit(Value::Int(n)) => {
                if *n < 1 {
                    return err("'break' depth must be at least 1", apos);
                }
                if *n > i64::from(depth) {
                    return err(
                        format!("break {n} to deep for current nest level ({depth})"),
                        apos,
                    );
                }
                BreakDepth::Fixed(*n as u32)
            }
            Expr::Lit(Value::Text(t)) if &**t == "all" => BreakDepth::Fixed(depth),
            Expr::Lit(Value::Text(t)) if &**t == "top" => BreakDepth::Fixed(depth - 1),
            Expr::Lit(_) => return err("'break' takes a loop count, \"all\" or \"top\"", apos),
            _ => BreakDepth::Computed(e, depth),
        };
        Ok(Stmt::Break(d, pos))
    }

    /// `IDENT { [ ... ] } (= | += | -= | *= | /=)` ahead?
    fn looks_like_assignment(&self) -> bool {
        if !matches!(self.peek(), Tok::Ident(_)) {
            return false;
        }
        let mut k = 1;
        let mut depth = 0i32;
        loop {
            match self.peek_at(k) {
                Tok::Op("[") => depth += 1,
                Tok::Op("]") => depth -= 1,
                Tok::Op("=" | "+=" | "-=" | "*=" | "/=") if depth == 0 => return true,
                Tok::Nl | Tok::Eof => return false,
                _ if depth == 0 => return false,
                _ => {}
            }
            k += 1;
        }
    }

    fn parse_assignment(&mut self) -> PResult<Stmt> {
        let pos = self.pos();
        let Tok::Ident(name) = self.advance() else {
            return err("expecting a variable", pos);
        };
        if is_reserved(&name) {
            return err(
                format!("left side argument is a reserved word ('{name}')"),
                pos,
            );
        }
        if self.event_prop(&name).is_some() {
            return err(
                format!(
                    "left side argument must be a user variable ('{name}' is a table property)"
                ),
                pos,
            );
        }
        let mut path = Vec::new();
        while self.eat_op("[") {
            path.push(self.parse_expr()?);
            self.expect_op("]")?;
        }
        let op_pos = self.pos();
        let op = match self.advance() {
            Tok::Op("=") => None,
            Tok::Op("+=") => Some(ArithOp::Add),
            Tok::Op("-=") => Some(ArithOp::Sub),
            Tok::Op("*=") => Some(ArithOp::Mul),
            Tok::Op("/=") => Some(ArithOp::Div),
            _ => return err("expecting '='", op_pos),
        };
        let slot = if op.is_none() && path.is_empty() {
            let s = self.var_slot(&name);
            if let Some(a) = self.slots.assigned.get_mut(s as usize) {
                *a = true;
            }
            s
        } else {
            // Compound and subscript assignments read the variable first.
            self.read_var(&name, pos)
        };
        if self.at_end_of_statement() {
            return err("expecting right side value after '='", self.pos());
        }
        let value = self.parse_expr()?;
        Ok(Stmt::Assign {
            target: Target { slot, path },
            op,
            value,
            pos: op_pos,
        })
    }

    fn parse_if(&mut self) -> PResult<Stmt> {
        let open = self.pos();
        self.advance();
        if self.is_op(".") {
            return err("'if' takes no modifiers", self.pos());
        }
        self.enter_block(open)?;
        let mut arms = Vec::new();
        let mut otherwise = None;
        let cond = self.parse_condition("if")?;
        self.end_header()?;
        let body = self.parse_block(&[])?;
        arms.push((cond, body));
        loop {
            if self.is_word("elif")
                || self.is_word("elsif")
                || (self.is_word("else") && matches!(self.peek_at(1), Tok::Ident(w) if w == "if"))
            {
                if self.is_word("else") {
                    self.advance();
                }
                self.advance();
                let cond = self.parse_condition("elif")?;
                self.end_header()?;
                let body = self.parse_block(&[])?;
                arms.push((cond, body));
            } else if self.is_word("else") {
                self.advance();
                self.end_header()?;
                otherwise = Some(self.parse_block(&[])?);
                if self.is_word("elif") || self.is_word("elsif") || self.is_word("else") {
                    return err("'else' must be the last branch of an 'if'", self.pos());
                }
            } else {
                break;
            }
        }
        self.expect_end("if", open)?;
        self.block_depth -= 1;
        Ok(Stmt::If { arms, otherwise })
    }

    fn parse_condition(&mut self, what: &str) -> PResult<Expr> {
        if self.at_end_of_statement() || self.is_op(":") {
            return err(format!("'{what}' requires a condition"), self.pos());
        }
        self.parse_expr()
    }

    fn parse_for(&mut self) -> PResult<Stmt> {
        let open = self.pos();
        self.advance();
        let vpos = self.pos();
        let name = match self.advance() {
            Tok::Ident(n) => n,
            _ => return err("for loop is malformed", vpos),
        };
        if is_reserved(&name) || self.event_prop(&name).is_some() {
            return err(
                "for loop is malformed (the loop variable must be a user variable)",
                vpos,
            );
        }
        if !self.is_word("in") {
            return err("for loop is malformed", self.pos());
        }
        self.advance();
        let spos = self.pos();
        let src = self.parse_condition("for")?;
        self.end_header()?;
        let var = self.var_slot(&name);
        if let Some(a) = self.slots.assigned.get_mut(var as usize) {
            *a = true;
        }
        self.enter_block(open)?;
        self.loop_depth += 1;
        let body = self.parse_block(&[])?;
        self.loop_depth -= 1;
        self.expect_end("for", open)?;
        self.block_depth -= 1;
        Ok(Stmt::For {
            var,
            src,
            body,
            pos: spos,
        })
    }

    fn parse_each_row(&mut self) -> PResult<Stmt> {
        let open = self.pos();
        self.advance();
        let mods = self.parse_iter_mods()?;
        let cond = self.parse_where()?;
        self.end_header()?;
        self.enter_block(open)?;
        self.loop_depth += 1;
        let body = self.parse_block(&[])?;
        self.loop_depth -= 1;
        self.expect_end("each_row", open)?;
        self.block_depth -= 1;
        Ok(Stmt::EachRow {
            plan: LoopPlan::of(&mods, cond.as_ref()),
            mods: Box::new(mods),
            cond,
            body,
            pos: open,
        })
    }

    fn parse_where(&mut self) -> PResult<Option<Expr>> {
        if !self.is_word("where") {
            return Ok(None);
        }
        self.advance();
        let empty = match self.peek() {
            Tok::Nl | Tok::Eof => true,
            Tok::Op(o) => matches!(*o, ")" | "]" | "}" | "," | ":" | "<<"),
            Tok::Ident(w) => matches!(
                w.as_str(),
                "end" | "if" | "for" | "each_row" | "return" | "break" | "continue" | "exit"
            ),
            _ => false,
        };
        if empty {
            return Ok(None);
        }
        Ok(Some(self.parse_expr()?))
    }

    /// Reads `.name(args)` modifiers of `each_row` / inline aggregations.
    fn parse_iter_mods(&mut self) -> PResult<IterMods> {
        let mut m = IterMods::default();
        let mut seen: Vec<String> = Vec::new();
        let mut forward = false;
        while self.is_op(".") {
            self.advance();
            let npos = self.pos();
            let name = match self.advance() {
                Tok::Ident(n) => n,
                t => return err(format!("invalid logical filter: '{}'", tok_text(&t)), npos),
            };
            if matches!(name.as_str(), "is" | "is_not" | "row" | "ever" | "never") {
                return err(
                    format!("invalid logical filter: '.{name}' (property filters apply to properties, not to iterators)"),
                    npos,
                );
            }
            let want = match name.as_str() {
                "reverse" | "forward" | "continue" | "next" => 0,
                "from" | "limit" => 1,
                "range" | "within" | "look_ahead" | "look_back" => 2,
                _ => return err(format!("invalid logical filter: '{name}'"), npos),
            };
            if seen.contains(&name) {
                return err(format!("duplicate filter '.{name}'"), npos);
            }
            seen.push(name.clone());
            let args = self.mod_args(&name, want, npos)?;
            let mut args = args.into_iter();
            let mut a = || args.next().unwrap_or(Expr::Lit(Value::Nil));
            match name.as_str() {
                "reverse" => m.reverse = true,
                "forward" => forward = true,
                "continue" => m.cont = true,
                "next" => m.next = true,
                "from" => m.from = Some(a()),
                "limit" => m.limit = Some(a()),
                "range" => m.scope.range = Some((a(), a())),
                _ => {
                    let k = match name.as_str() {
                        "within" => WindowKind::Within,
                        "look_ahead" => WindowKind::LookAhead,
                        _ => WindowKind::LookBack,
                    };
                    if let Some((old, _, _)) = &m.scope.window {
                        return err(window_conflict(*old, k), npos);
                    }
                    m.scope.window = Some((k, a(), a()));
                }
            }
            if m.reverse && forward {
                return err("filter must be either '.forward' or '.reverse'", npos);
            }
            if m.cont && m.from.is_some() {
                return err("'.continue' cannot be combined with '.from'", npos);
            }
        }
        Ok(m)
    }

    fn mod_args(&mut self, name: &str, want: usize, npos: Pos) -> PResult<Vec<Expr>> {
        if !self.is_op("(") {
            return err(format!("filter '{name}' is missing brackets"), npos);
        }
        self.advance();
        let mut args = Vec::new();
        if !self.is_op(")") {
            loop {
                args.push(self.parse_expr()?);
                if !self.eat_op(",") {
                    break;
                }
            }
        }
        self.expect_op(")")?;
        if args.len() != want {
            let n = ["no parameters", "one parameter", "two parameters"][want];
            return err(format!("'.{name}' takes {n}"), npos);
        }
        Ok(args)
    }

    // ----- expressions ---------------------------------------------------------

    /// Counts one level of expression depth (restored by [`Self::parse_expr`]).
    fn deeper(&mut self) -> PResult<()> {
        self.expr_depth += 1;
        if self.expr_depth > MAX_EXPR_DEPTH {
            return err("expression is too long or nested too deeply", self.pos());
        }
        Ok(())
    }

    pub(crate) fn parse_expr(&mut self) -> PResult<Expr> {
        let saved = self.expr_depth;
        self.expr_depth += NESTING_COST - 1;
        let r = self.deeper().and_then(|()| self.parse_or());
        self.expr_depth = saved;
        r
    }

    fn parse_or(&mut self) -> PResult<Expr> {
        let mut left = self.parse_and()?;
        while self.is_op("||") || self.is_word("or") {
            self.deeper()?;
            self.advance();
            let right = self.parse_and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> PResult<Expr> {
        let mut left = self.parse_not()?;
        while self.is_op("&&") || self.is_word("and") {
            self.deeper()?;
            self.advance();
            let right = self.parse_not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_not(&mut self) -> PResult<Expr> {
        if self.is_word("not") {
            self.deeper()?;
            self.advance();
            let e = self.parse_not()?;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.parse_cmp()
    }

    fn peek_cmp(&self) -> Option<(CmpOp, usize)> {
        Some(match self.peek() {
            Tok::Op("==") => (CmpOp::Eq, 1),
            Tok::Op("!=") => (CmpOp::Ne, 1),
            Tok::Op("<") => (CmpOp::Lt, 1),
            Tok::Op("<=") => (CmpOp::Le, 1),
            Tok::Op(">") => (CmpOp::Gt, 1),
            Tok::Op(">=") => (CmpOp::Ge, 1),
            Tok::Ident(w) => match w.as_str() {
                "in" => (CmpOp::In, 1),
                "contains" => (CmpOp::Contains, 1),
                "any" => (CmpOp::Any, 1),
                "not" if matches!(self.peek_at(1), Tok::Ident(x) if x == "in") => (CmpOp::NotIn, 2),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn parse_cmp(&mut self) -> PResult<Expr> {
        let left = self.parse_add()?;
        let Some((op, n)) = self.peek_cmp() else {
            return Ok(left);
        };
        self.i += n;
        let right = self.parse_add()?;
        if self.peek_cmp().is_some() {
            return err(
                "comparison operators cannot be chained (use '&&')",
                self.pos(),
            );
        }
        // A bare property on the left: set rules of §7.5 and the
        // dictionary-id fast path for text equality.
        if let Expr::Prop(p) = &left {
            let text_eq = matches!(op, CmpOp::Eq | CmpOp::Ne)
                && matches!(right, Expr::Lit(Value::Text(_)))
                && matches!(
                    p,
                    PropRef::Event
                        | PropRef::User {
                            kind: PropKind::Text,
                            ..
                        }
                );
            if p.is_set() || text_eq {
                return Ok(self.make_filter(
                    *p,
                    FilterMode::Is,
                    op,
                    right,
                    TimeScope::default(),
                    false,
                ));
            }
        }
        Ok(Expr::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn make_filter(
        &mut self,
        prop: PropRef,
        mode: FilterMode,
        cmp: CmpOp,
        rhs: Expr,
        scope: TimeScope,
        next: bool,
    ) -> Expr {
        let text_const = match (&rhs, prop, cmp) {
            (
                Expr::Lit(Value::Text(t)),
                PropRef::Event
                | PropRef::User {
                    kind: PropKind::Text,
                    ..
                },
                CmpOp::Eq | CmpOp::Ne,
            ) => Some(self.text_const(t)),
            _ => None,
        };
        Expr::Filter(Box::new(PropFilter {
            prop,
            mode,
            cmp,
            rhs,
            scope,
            next,
            text_const,
        }))
    }

    fn parse_add(&mut self) -> PResult<Expr> {
        let mut left = self.parse_mul()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => ArithOp::Add,
                Tok::Op("-") => ArithOp::Sub,
                _ => break,
            };
            let pos = self.pos();
            self.deeper()?;
            self.advance();
            let right = self.parse_mul()?;
            left = Expr::Arith(op, Box::new(left), Box::new(right), pos);
        }
        Ok(left)
    }

    fn parse_mul(&mut self) -> PResult<Expr> {
        let mut left = self.parse_unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => ArithOp::Mul,
                Tok::Op("/") => ArithOp::Div,
                _ => break,
            };
            let pos = self.pos();
            self.deeper()?;
            self.advance();
            let right = self.parse_unary()?;
            left = Expr::Arith(op, Box::new(left), Box::new(right), pos);
        }
        Ok(left)
    }

    fn parse_unary(&mut self) -> PResult<Expr> {
        let pos = self.pos();
        if self.is_op("-") || self.is_op("!") {
            self.deeper()?;
        }
        if self.eat_op("-") {
            let e = self.parse_unary()?;
            // Fold negative literals (`-7`, `-2_days`).
            return Ok(match e {
                Expr::Lit(Value::Int(i)) => Expr::Lit(
                    i.checked_neg()
                        .map_or(Value::Float(-(i as f64)), Value::Int),
                ),
                Expr::Lit(Value::Float(f)) => Expr::Lit(Value::Float(-f)),
                other => Expr::Neg(Box::new(other), pos),
            });
        }
        if self.eat_op("!") {
            let e = self.parse_unary()?;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.parse_postfix()
    }

    fn parse_postfix(&mut self) -> PResult<Expr> {
        let mut e = self.parse_primary()?;
        while self.is_op("[") {
            let pos = self.pos();
            if matches!(e, Expr::Prop(_) | Expr::Filter(_)) {
                return err("subscript is not possible on table properties", pos);
            }
            self.deeper()?;
            self.advance();
            let k = self.parse_expr()?;
            self.expect_op("]")?;
            e = Expr::Index(Box::new(e), Box::new(k));
        }
        if self.is_op(".") {
            if let Tok::Ident(n) = self.peek_at(1) {
                return err(format!("invalid modifier '.{n}' here"), self.pos());
            }
        }
        Ok(e)
    }

    fn parse_primary(&mut self) -> PResult<Expr> {
        let pos = self.pos();
        match self.advance() {
            Tok::Int(i) => Ok(Expr::Lit(Value::Int(i))),
            Tok::Float(f) => Ok(Expr::Lit(Value::Float(f))),
            Tok::Span(s) => Ok(Expr::Lit(Value::Int(s))),
            Tok::Str(s) => Ok(Expr::Lit(Value::text(&s))),
            Tok::Param(name) => match self.params.get(&name) {
                Some(v) => Ok(Expr::Lit(v.clone())),
                None => Err(CompileError::new(
                    ErrorCode::TemplateMissingVar,
                    format!("missing template variable '{name}'"),
                    pos,
                )),
            },
            Tok::Op("(") => {
                let e = self.parse_expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    items.push(self.parse_expr()?);
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op("]")?;
                Ok(fold_list(items))
            }
            Tok::Op("{") => self.parse_dict(),
            Tok::Ident(name) => self.parse_name(name, pos),
            Tok::Nl | Tok::Eof => err("expecting a value", pos),
            t => err(format!("unexpected '{}'", tok_text(&t)), pos),
        }
    }

    fn parse_dict(&mut self) -> PResult<Expr> {
        let mut items: Vec<(Value, Expr)> = Vec::new();
        while !self.is_op("}") {
            let kpos = self.pos();
            let key = match self.advance() {
                Tok::Str(s) => Value::text(&s),
                Tok::Ident(s) => Value::text(&s),
                Tok::Int(_) | Tok::Float(_) | Tok::Span(_) => {
                    return err("dictionaries may not have numeric keys", kpos)
                }
                t => {
                    return err(
                        format!("unexpected '{}' as a dictionary key", tok_text(&t)),
                        kpos,
                    )
                }
            };
            self.expect_op(":")?;
            let v = self.parse_expr()?;
            if let Some(k) = Key::of(&key) {
                if let Some(slot) = items
                    .iter_mut()
                    .find(|(x, _)| Key::of(x).as_ref() == Some(&k))
                {
                    slot.1 = v;
                } else {
                    items.push((key, v));
                }
            }
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op("}")?;
        Ok(Expr::Dict(items))
    }

    fn parse_name(&mut self, name: String, pos: Pos) -> PResult<Expr> {
        match name.as_str() {
            "true" | "True" => return Ok(Expr::Lit(Value::Bool(true))),
            "false" | "False" => return Ok(Expr::Lit(Value::Bool(false))),
            "nil" | "None" => return Ok(Expr::Lit(Value::Nil)),
            "sum" | "avg" | "min" | "max" | "count" | "dcount" | "test" | "row" => {
                return self.parse_inline_agg(&name, pos)
            }
            "tally" => return err("'tally' is a statement (use '<<')", pos),
            _ => {}
        }
        if let Some(f) = Func::lookup(&name) {
            return self.parse_call(f, &name, pos);
        }
        if name.starts_with("__") {
            return err(
                format!("identifiers starting with '__' are reserved ('{name}')"),
                pos,
            );
        }
        if is_reserved(&name) {
            return err(format!("unexpected reserved word '{name}'"), pos);
        }
        if let Some(p) = self.event_prop(&name) {
            return self.parse_prop(p, &name);
        }
        if self.is_op("(") {
            return err(format!("item '{name}' is not a function"), pos);
        }
        if self.is_op(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
            return err(
                format!("filter applied to: '{name}' (filter chain functions can only be used with properties)"),
                self.pos(),
            );
        }
        let slot = self.read_var(&name, pos);
        Ok(Expr::Var(slot))
    }

    fn parse_call(&mut self, f: Func, name: &str, pos: Pos) -> PResult<Expr> {
        let (min, max) = f.arity();
        if !self.is_op("(") {
            if f.is_variable() {
                return Ok(Expr::Call(f, Vec::new(), pos));
            }
            if min > 0 {
                return err(
                    format!("function call for '{name}' requires parameters"),
                    pos,
                );
            }
            return Ok(Expr::Call(f, Vec::new(), pos));
        }
        self.advance();
        let mut args = Vec::new();
        if !self.is_op(")") {
            loop {
                args.push(self.parse_expr()?);
                if !self.eat_op(",") {
                    break;
                }
            }
        }
        self.expect_op(")")?;
        if args.len() < min || args.len() > max {
            let what = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(CompileError::new(
                ErrorCode::SdkParamCount,
                format!("`{name}` takes {what} parameters"),
                pos,
            ));
        }
        Ok(Expr::Call(f, args, pos))
    }

    fn parse_inline_agg(&mut self, name: &str, pos: Pos) -> PResult<Expr> {
        let kind = match name {
            "sum" => AggKind::Sum,
            "avg" => AggKind::Avg,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "count" => AggKind::Count,
            "dcount" => AggKind::DCount,
            "test" => AggKind::Test,
            _ => AggKind::Row,
        };
        let mut value = None;
        if !matches!(kind, AggKind::Test | AggKind::Row) {
            if !self.eat_op("(") {
                return err(format!("aggregation '{name}' takes one parameter"), pos);
            }
            if self.is_op(")") {
                return err(format!("aggregation '{name}' takes one parameter"), pos);
            }
            value = Some(self.parse_expr()?);
            if !self.is_op(")") {
                return err(format!("aggregation '{name}' takes one parameter"), pos);
            }
            self.advance();
        } else if self.is_op("(") {
            self.advance();
            if !self.eat_op(")") {
                return err(format!("'{name}' takes no parameters"), pos);
            }
        }
        let mods = self.parse_iter_mods()?;
        let cond = self.parse_where()?;
        Ok(Expr::Agg(
            Box::new(InlineAgg {
                kind,
                value,
                mods,
                cond,
            }),
            pos,
        ))
    }

    /// A property reference with optional filter/scope modifiers (§7.3).
    fn parse_prop(&mut self, prop: PropRef, name: &str) -> PResult<Expr> {
        let mut mode: Option<(FilterMode, CmpOp, Expr, Pos)> = None;
        let mut scope = TimeScope::default();
        let mut next = false;
        let mut scope_pos: Option<Pos> = None;
        let mut seen: Vec<String> = Vec::new();
        while self.is_op(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
            self.advance();
            let npos = self.pos();
            let Tok::Ident(m) = self.advance() else {
                return err("expecting a filter name", npos);
            };
            if seen.contains(&m) {
                return err(format!("duplicate filter '.{m}'"), npos);
            }
            seen.push(m.clone());
            match m.as_str() {
                "is" | "is_not" | "row" | "ever" | "never" => {
                    if mode.is_some() {
                        return err("filter must be either '.is', '.ever' or '.never'", npos);
                    }
                    let fm = match m.as_str() {
                        "is" | "row" => FilterMode::Is,
                        "is_not" => FilterMode::IsNot,
                        "ever" => FilterMode::Ever,
                        _ => FilterMode::Never,
                    };
                    if !self.eat_op("(") {
                        return err(format!("filter '{m}' is missing brackets"), npos);
                    }
                    let Some((op, n)) = self.peek_cmp() else {
                        return err(format!(".{m}( <logic> ) requires a comparator"), npos);
                    };
                    self.i += n;
                    if self.is_op(")") {
                        return err(
                            format!(".{m}( <logic> ) requires a value after the comparator"),
                            self.pos(),
                        );
                    }
                    let rhs = self.parse_add()?;
                    if self.peek_cmp().is_some() {
                        return err(
                            format!(".{m}( <logic> ) allows only one comparison"),
                            self.pos(),
                        );
                    }
                    self.expect_op(")")?;
                    mode = Some((fm, op, rhs, npos));
                }
                "range" | "within" | "look_ahead" | "look_back" => {
                    let mut args = self.mod_args(&m, 2, npos)?.into_iter();
                    let (a, b) = (
                        args.next().unwrap_or(Expr::Lit(Value::Nil)),
                        args.next().unwrap_or(Expr::Lit(Value::Nil)),
                    );
                    scope_pos.get_or_insert(npos);
                    if m == "range" {
                        scope.range = Some((a, b));
                    } else {
                        let k = match m.as_str() {
                            "within" => WindowKind::Within,
                            "look_ahead" => WindowKind::LookAhead,
                            _ => WindowKind::LookBack,
                        };
                        if let Some((old, _, _)) = &scope.window {
                            return err(window_conflict(*old, k), npos);
                        }
                        scope.window = Some((k, a, b));
                    }
                }
                "next" => {
                    self.mod_args(&m, 0, npos)?;
                    scope_pos.get_or_insert(npos);
                    next = true;
                }
                "reverse" | "forward" | "continue" | "from" | "limit" => {
                    return err(format!("invalid property filter: '{m}'"), npos)
                }
                _ => return err(format!("invalid property filter: '{m}'"), npos),
            }
        }
        match mode {
            None => {
                if let Some(p) = scope_pos {
                    return err(
                        format!("'{name}' has a time scope but no '.ever' or '.never' filter"),
                        p,
                    );
                }
                Ok(Expr::Prop(prop))
            }
            Some((fm, op, rhs, _)) => {
                if matches!(fm, FilterMode::Is | FilterMode::IsNot) {
                    if let Some(p) = scope_pos {
                        return err(
                            "'.is()' cannot be combined with date scopes. You may apply a scope to 'each_row' to constrain a row set.",
                            p,
                        );
                    }
                }
                Ok(self.make_filter(prop, fm, op, rhs, scope, next))
            }
        }
    }
}

fn window_conflict(a: WindowKind, b: WindowKind) -> String {
    let la = matches!(a, WindowKind::LookAhead | WindowKind::LookBack);
    let lb = matches!(b, WindowKind::LookAhead | WindowKind::LookBack);
    if la && lb {
        "use '.within' instead of both '.look_ahead' and '.look_back'".into()
    } else {
        "'.within' cannot be combined with '.look_ahead' or '.look_back'".into()
    }
}

/// A list literal of literals becomes one constant.
fn fold_list(items: Vec<Expr>) -> Expr {
    if items.iter().all(|e| matches!(e, Expr::Lit(_))) {
        let vals = items
            .into_iter()
            .map(|e| match e {
                Expr::Lit(v) => v,
                _ => Value::Nil,
            })
            .collect();
        Expr::Lit(Value::list(vals))
    } else {
        Expr::List(items)
    }
}
