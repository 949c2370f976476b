//! Interned push keys: a push whose group is a text chain such as
//! `p + " > " + product_name` is filed under a pair of numbers (one per
//! text part) instead of its text, and the text is built only for the
//! entries a query renders.
//!
//! A query's result trees share one [`KeySpace`] (numbers are given out
//! under a lock, once per distinct text per run state), so their levels
//! merge number by number. A number pair stands for exactly one text,
//! and vice versa, only when the chain splits back into its parts in one
//! way; [`KeyTemplate`] allows only chains with a literal between the
//! parts, and the run marks the space failed when a first part's text
//! could split another way ([`KeyTemplate::splits_uniquely`]). The query
//! then runs again with text keys.

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
    /// The literal between the two varying parts, when there are two.
    pub separator: Option<Arc<str>>,
    /// The separator's proper prefixes that are followed in it by another
    /// start of it (`" >"` for `" > "`): a first part ending in one could
    /// split another way.
    overlaps: Vec<Arc<str>>,
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
                Some(TemplateItem::Lit(sep)) if a + 1 < b => Some(sep.clone()),
                _ => return None,
            },
            _ => return None,
        };
        // Prefix `sep[..k]` overlaps when `sep[k..]` starts `sep` again.
        let overlaps = separator
            .iter()
            .flat_map(|sep| {
                sep.char_indices()
                    .skip(1)
                    .filter(|&(k, _)| sep.starts_with(&sep[k..]))
                    .map(|(k, _)| Arc::from(&sep[..k]))
                    .collect::<Vec<_>>()
            })
            .collect();
        Some(KeyTemplate {
            items,
            separator,
            overlaps,
        })
    }

    /// True when `first`, as the first of two varying parts, keeps every
    /// key spelled with it splitting back into its parts one way only.
    ///
    /// Say `p + sep + q` equals `p2 + sep + q2` with `p` shorter than `p2`,
    /// so `p2` is `p + s`, and `sep + q` is `s + sep + q2`. If `s` is at
    /// least as long as `sep`, `p2` contains `sep`; if shorter, `s` is a
    /// prefix of `sep` followed in it by another start of it, and `p2` ends
    /// with that prefix. A first part with neither can be split one way.
    pub fn splits_uniquely(&self, first: &str) -> bool {
        let Some(sep) = &self.separator else {
            return true;
        };
        !first.contains(&**sep) && !self.overlaps.iter().any(|o| first.ends_with(&**o))
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

    /// The number of `text` as the varying part `part` (0 or 1), or `None`
    /// when the text would make keys ambiguous (then the space is failed).
    pub fn intern(&self, part: usize, text: &str) -> Option<u32> {
        if part == 0 && !self.template.splits_uniquely(text) {
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

    /// `v + " > " + prop`.
    fn var_arrow_prop() -> KeyTemplate {
        let items = vec![TemplateItem::Var(0), lit(" > "), TemplateItem::Prop(3)];
        KeyTemplate::of(items).expect("var > prop")
    }

    #[test]
    fn templates_need_a_literal_between_two_parts() {
        let t = var_arrow_prop();
        assert_eq!(t.separator.as_deref(), Some(" > "));
        assert_eq!(t.overlaps, vec![Arc::<str>::from(" >")]);
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
    fn first_parts_that_could_split_another_way_are_refused() {
        let t = |sep: &str| {
            KeyTemplate::of(vec![TemplateItem::Var(0), lit(sep), TemplateItem::Var(1)])
                .expect("template")
        };
        let arrow = t(" > ");
        for ok in ["shoe", "blue shirt", "a>b", "ends with>", "x >y", ""] {
            assert!(arrow.splits_uniquely(ok), "{ok:?}");
        }
        for bad in ["x > y", "a >", " > ", "ends with >"] {
            assert!(!arrow.splits_uniquely(bad), "{bad:?}");
        }
        // "aa": "xa" + "aa" + "y" is "x" + "aa" + "ay".
        let aa = t("aa");
        assert!(!aa.splits_uniquely("xa"));
        assert!(aa.splits_uniquely("xb"));
        assert_eq!(aa.overlaps, vec![Arc::<str>::from("a")]);
        // No overlap in "->": only containing it is refused.
        let dash = t("->");
        assert!(dash.overlaps.is_empty());
        assert!(dash.splits_uniquely("a-"));
        assert!(!dash.splits_uniquely("a->b"));
        // Multi-byte separators split at character boundaries.
        let tri = t("\u{25b6} \u{25b6}");
        assert_eq!(tri.overlaps, vec![Arc::<str>::from("\u{25b6} ")]);
        assert!(!tri.splits_uniquely("a\u{25b6} "));
        assert!(tri.splits_uniquely("a\u{25b6}"));
    }

    /// Brute force on short texts over a small alphabet: whenever two
    /// different pairs spell one text, one of their first parts is refused.
    #[test]
    fn refused_first_parts_cover_every_ambiguous_pair() {
        fn texts(alphabet: &[char], max: usize) -> Vec<String> {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                let next: Vec<String> = last
                    .iter()
                    .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                    .collect();
                all.extend(next.iter().cloned());
                last = next;
            }
            all
        }
        for sep in ["ab", "aa", "aba", "a", "abab"] {
            let t = KeyTemplate::of(vec![TemplateItem::Var(0), lit(sep), TemplateItem::Var(1)])
                .expect("template");
            let all = texts(&['a', 'b'], 4);
            let mut seen: std::collections::HashMap<String, (String, String)> =
                std::collections::HashMap::new();
            for p in &all {
                for q in &all {
                    let text = format!("{p}{sep}{q}");
                    match seen.get(&text) {
                        Some((p2, q2)) => assert!(
                            !t.splits_uniquely(p) || !t.splits_uniquely(p2),
                            "{sep:?}: ({p:?}, {q:?}) and ({p2:?}, {q2:?}) both accepted"
                        ),
                        None => {
                            seen.insert(text, (p.clone(), q.clone()));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn keys_spell_their_texts_and_a_separator_in_the_first_part_fails() {
        let t = var_arrow_prop();
        let space = Arc::new(KeySpace::new(t));
        let a = space.intern(0, "shoe").expect("a");
        let b = space
            .intern(1, "sock > red")
            .expect("b: the last part may hold anything");
        assert_eq!(space.intern(1, "shoe"), Some(a));
        let mut s = String::new();
        space.speller().spell(KeySpace::pack(&[a, b]), &mut s);
        assert_eq!(s, "shoe > sock > red");
        assert!(!space.failed());
        assert!(
            space.intern(0, "sock red").is_some(),
            "a space alone is fine"
        );
        assert!(!space.failed());
        assert_eq!(space.intern(0, "sock > red"), None);
        assert!(space.failed());
    }
}
