//! Interned push keys: a push whose group is a text chain such as
//! `p + " > " + product_name` is filed under a pair of numbers (one per
//! text part) instead of its text, and the text is built only for the
//! entries a query renders.
//!
//! A query's result trees share one [`KeySpace`] (numbers are given out
//! under a lock, once per distinct text per run state), so their levels
//! merge number by number. A number pair stands for exactly one text,
//! and vice versa, only when the chain splits back into its parts in one
//! way; [`KeyTemplate`] allows only chains where that follows from the
//! literals between the parts, and the run marks the space failed when a
//! part's text would break it. The query then runs again with text keys.

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One operand of a pushed text chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateItem {
    /// Literal text, the same in every push.
    Lit(Arc<str>),
    /// A single-valued text property read at the cursor row (its index).
    Prop(u32),
    /// A variable slot (its text at push time).
    Var(u32),
}

/// The shape of the one text-chain push of a program that can be
/// interned: literals and at most two varying parts, never two varying
/// parts side by side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    /// The chain's operands, left to right, adjacent literals joined.
    pub items: Vec<TemplateItem>,
    /// First character of the literal after the first varying part when
    /// a second one follows: a first part containing it could make two
    /// number pairs spell the same text.
    pub separator: Option<char>,
}

impl KeyTemplate {
    /// The template of a chain's operands (left to right), if it has one.
    pub fn of(operands: Vec<TemplateItem>) -> Option<KeyTemplate> {
        let mut items: Vec<TemplateItem> = Vec::with_capacity(operands.len());
        for op in operands {
            match (items.last_mut(), op) {
                (Some(TemplateItem::Lit(a)), TemplateItem::Lit(b)) => {
                    *a = Arc::from(format!("{a}{b}"));
                }
                (_, TemplateItem::Lit(b)) if b.is_empty() => {}
                (_, op) => items.push(op),
            }
        }
        let varying: Vec<usize> = (0..items.len())
            .filter(|&i| !matches!(items[i], TemplateItem::Lit(_)))
            .collect();
        let separator = match varying[..] {
            [_] => None,
            [a, b] => match items.get(a + 1) {
                Some(TemplateItem::Lit(sep)) if a + 1 < b => sep.chars().next(),
                _ => return None,
            },
            _ => return None,
        };
        if varying.len() == 2 && separator.is_none() {
            return None;
        }
        Some(KeyTemplate { items, separator })
    }

    /// Number of varying parts (1 or 2).
    pub fn varying(&self) -> usize {
        self.items
            .iter()
            .filter(|i| !matches!(i, TemplateItem::Lit(_)))
            .count()
    }
}

#[derive(Debug, Default)]
struct Interned {
    ids: FxHashMap<Arc<str>, u32>,
    texts: Vec<Arc<str>>,
}

/// Numbers for the texts of one query's interned pushes, shared by its
/// result trees.
#[derive(Debug)]
pub struct KeySpace {
    template: KeyTemplate,
    interned: Mutex<Interned>,
    failed: AtomicBool,
}

impl KeySpace {
    /// An empty space for pushes of `template`.
    pub fn new(template: KeyTemplate) -> KeySpace {
        KeySpace {
            template,
            interned: Mutex::new(Interned::default()),
            failed: AtomicBool::new(false),
        }
    }

    /// The template its keys follow.
    pub fn template(&self) -> &KeyTemplate {
        &self.template
    }

    /// The number of `text` as the varying part `part` (0 or 1), or `None`
    /// when the text would make keys ambiguous (then the space is failed).
    pub fn intern(&self, part: usize, text: &str) -> Option<u32> {
        if part == 0 && self.template.separator.is_some_and(|c| text.contains(c)) {
            self.fail();
            return None;
        }
        let mut g = self.interned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = g.ids.get(text) {
            return Some(id);
        }
        let Ok(id) = u32::try_from(g.texts.len()) else {
            drop(g);
            self.fail();
            return None;
        };
        let t: Arc<str> = Arc::from(text);
        g.texts.push(t.clone());
        g.ids.insert(t, id);
        Some(id)
    }

    /// Gives up on interned keys for this query (its answer is run again
    /// with text keys).
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// True once a push could not be interned.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The packed key of the varying parts' numbers.
    pub fn pack(ids: &[u32]) -> u64 {
        ids.iter()
            .enumerate()
            .fold(0, |k, (i, &id)| k | (u64::from(id) << (32 * i)))
    }

    /// A resolver that spells packed keys, holding the texts for its life.
    pub(crate) fn speller(self: &Arc<Self>) -> Speller<'_> {
        Speller {
            space: self,
            interned: self.interned.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// Spells packed keys as the text their push would have built.
pub(crate) struct Speller<'a> {
    space: &'a KeySpace,
    interned: std::sync::MutexGuard<'a, Interned>,
}

impl Speller<'_> {
    /// Appends the text of `key` to `out`.
    pub(crate) fn spell(&self, key: u64, out: &mut String) {
        let mut part = 0;
        for item in &self.space.template.items {
            match item {
                TemplateItem::Lit(t) => out.push_str(t),
                _ => {
                    let id = (key >> (32 * part)) as u32;
                    if let Some(t) = self.interned.texts.get(id as usize) {
                        out.push_str(t);
                    }
                    part += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(t: &str) -> TemplateItem {
        TemplateItem::Lit(Arc::from(t))
    }

    #[test]
    fn templates_need_a_literal_between_two_parts() {
        let t = KeyTemplate::of(vec![
            TemplateItem::Var(0),
            lit(" > "),
            TemplateItem::Prop(3),
        ])
        .expect("var > prop");
        assert_eq!(t.separator, Some(' '));
        assert_eq!(t.varying(), 2);
        assert!(KeyTemplate::of(vec![TemplateItem::Var(0), TemplateItem::Prop(3)]).is_none());
        assert!(
            KeyTemplate::of(vec![TemplateItem::Var(0), lit(""), TemplateItem::Prop(3)]).is_none()
        );
        assert!(KeyTemplate::of(vec![
            TemplateItem::Var(0),
            lit("-"),
            TemplateItem::Var(1),
            lit("-"),
            TemplateItem::Prop(3)
        ])
        .is_none());
        let one = KeyTemplate::of(vec![lit("a"), lit("b"), TemplateItem::Prop(1), lit("!")])
            .expect("one part");
        assert_eq!(one.items, vec![lit("ab"), TemplateItem::Prop(1), lit("!")]);
        assert_eq!(one.separator, None);
        assert!(KeyTemplate::of(vec![lit("a"), lit("b")]).is_none());
    }

    #[test]
    fn keys_spell_their_texts_and_a_separator_in_the_first_part_fails() {
        let t = KeyTemplate::of(vec![
            TemplateItem::Var(0),
            lit(" > "),
            TemplateItem::Prop(3),
        ])
        .expect("template");
        let space = Arc::new(KeySpace::new(t));
        let a = space.intern(0, "shoe").expect("a");
        let b = space
            .intern(1, "sock red")
            .expect("b: spaces are fine in the last part");
        assert_eq!(space.intern(1, "shoe"), Some(a));
        let mut s = String::new();
        space.speller().spell(KeySpace::pack(&[a, b]), &mut s);
        assert_eq!(s, "shoe > sock red");
        assert!(!space.failed());
        assert_eq!(space.intern(0, "sock red"), None);
        assert!(space.failed());
    }
}
