//! The batch query (rest spec 5.7, OSL spec 12.4): `@segment`, `@use`,
//! `@property` and `@histogram` sections in one request, one answer.
//!
//! Everything is checked and compiled first; then the segments are stored
//! and evaluated; then each property and histogram section runs in written
//! order and contributes its root branch.

use crate::event::Selection;
use crate::histogram::{HistogramQuery, HistogramSection};
use crate::property::{property_query, PropertyQuery};
use crate::segment::{define_and_evaluate, listing, prepare, SegmentRegistry};
use crate::{Answer, QueryError};
use osl::CompileOptions;
use osl::{Params, SectionKind};
use serde_json::json;
use store::Db;

enum Work {
    Property { name: String, query: PropertyQuery },
    Histogram(Box<HistogramSection>),
}

fn bad(detail: impl Into<String>) -> QueryError {
    QueryError::Request {
        detail: detail.into(),
    }
}

/// Runs a batch request: `{"_": [root of each @property / @histogram section]}`.
pub fn batch_query(
    db: &Db,
    registry: &SegmentRegistry,
    table: &str,
    body: &str,
    params: &Params,
    now: i64,
    debug: bool,
) -> Result<Answer, QueryError> {
    let schema = db.table(table)?;
    let text = osl::substitute_templates(body, params).map_err(QueryError::Compile)?;
    let sections = osl::parse_sections(&text).map_err(QueryError::Compile)?;
    let prepared = prepare(db, registry, table, &sections, params)?;
    let defined: Vec<&str> = sections
        .iter()
        .filter(|s| s.kind == SectionKind::Segment)
        .map(|s| s.name.as_str())
        .collect();
    // `@use`: the last one wins; names must be `*`, stored, or defined in this batch.
    let mut selections = vec![Selection::Everyone];
    for s in sections.iter().filter(|s| s.kind == SectionKind::Use) {
        let names: Vec<&str> = std::iter::once(s.name.as_str())
            .chain(s.flags.iter().map(|(k, _)| k.as_str()))
            .filter(|n| !n.is_empty())
            .collect();
        selections = names
            .into_iter()
            .map(|n| match n {
                "*" => Ok(Selection::Everyone),
                _ if schema.segments.contains_key(n) || defined.contains(&n) => {
                    Ok(Selection::Segment(n.to_string()))
                }
                _ => Err(QueryError::MissingSegment(n.to_string())),
            })
            .collect::<Result<_, _>>()?;
    }
    let mut work = Vec::new();
    let mut listings = listing(&prepared);
    for s in &sections {
        let get = |k: &str| s.flags.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        match s.kind {
            SectionKind::Property => {
                let query = PropertyQuery::from_params(&get, selections.clone())?;
                work.push(Work::Property {
                    name: s.name.clone(),
                    query,
                });
            }
            SectionKind::Histogram => {
                if !store::schema::valid_segment_name(&s.name) {
                    return Err(bad(format!("bad histogram name '{}'", s.name)));
                }
                let mut q = HistogramQuery::from_params(&get, s.name.clone(), params.clone(), now)?;
                q.selections = selections.clone();
                let opts = CompileOptions {
                    line_offset: s.header_line,
                    section: Some(s.name.clone()),
                    ..CompileOptions::default()
                };
                let section = HistogramSection::compile(&schema, &s.body, q, opts)?;
                if debug {
                    listings.push_str(&format!("@histogram {}\n{}\n", s.name, section.listing()));
                }
                work.push(Work::Histogram(Box::new(section)));
            }
            SectionKind::Segment | SectionKind::Use => {}
        }
    }
    if debug {
        return Ok(Answer::Listing(listings));
    }
    define_and_evaluate(db, registry, table, prepared)?;
    let mut roots = Vec::new();
    for w in work {
        let tree = match w {
            Work::Property { name, query } => property_query(db, table, &name, &query)?,
            Work::Histogram(section) => section.run(db, table)?,
        };
        roots.push(tree["_"].get(0).cloned().unwrap_or_else(|| json!({})));
    }
    Ok(Answer::Tree(json!({ "_": roots })))
}
