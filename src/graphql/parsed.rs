//! Parsed queries, kept by their text.
//!
//! A dashboard sends the same few query texts over and over, and parsing
//! one (async-graphql's parser is built on pest) was 7 % of the server's
//! CPU per dashboard request (BENCHMARKS.md, "Parsing, timers, cursors").
//! A copy of the parsed document costs a fraction of that. Only documents
//! that parsed are kept; validation still runs on every request.
//!
//! When the cache is full it keeps the documents used since it last made
//! room (a second chance) and lets the others go, at most once per as many
//! lookups as it holds documents; otherwise the new text is not kept. So a
//! flood of texts, which anyone can send before signing in, cannot push out
//! a text that dashboards repeat more often than that.
//!
//! With each document it keeps whether executing it may merge objects
//! ([`merges_objects`]), which task pages written as JSON must know.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Request, ServerError};

/// Longest query text kept (longer ones are parsed every time).
pub const MAX_QUERY_LEN: usize = 8 * 1024;
/// Most query text kept in all (see the module's comment for what happens
/// when a new one would pass it). A document takes up to about 110 times its text (a field
/// per two characters), so this bounds the cache near 7 MB.
pub const MAX_KEPT_TEXT: usize = 64 * 1024;

/// Documents parsed from query texts up to [`MAX_QUERY_LEN`] bytes, their
/// texts [`MAX_KEPT_TEXT`] bytes at most in all.
#[derive(Default)]
pub struct ParsedQueries(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    docs: HashMap<String, Entry>,
    text: usize,
    /// Lookups since the cache last made room.
    lookups: usize,
}

struct Entry {
    doc: Arc<ExecutableDocument>,
    merges_objects: bool,
    /// Looked up since the cache last made room.
    used: bool,
}

impl Kept {
    /// Makes room, unless it did fewer lookups ago than it holds documents
    /// (every one has not had its chance): the documents not used since the
    /// last time go, returned to be freed once the lock is released; the
    /// others count as unused from now on.
    fn make_room(&mut self) -> Vec<(String, Entry)> {
        if self.lookups < self.docs.len() {
            return Vec::new();
        }
        self.lookups = 0;
        let dropped: Vec<_> = self
            .docs
            .extract_if(|_, entry| !std::mem::take(&mut entry.used))
            .collect();
        self.text -= dropped.iter().map(|(text, _)| text.len()).sum::<usize>();
        dropped
    }
}

/// A request's parsed document, and what executing it may do.
#[derive(Debug)]
pub struct Parsed<'r> {
    pub doc: &'r ExecutableDocument,
    /// [`merges_objects`], or `true` for a text too long to keep (the walk
    /// is not free, and dashboards send short texts).
    pub merges_objects: bool,
}

impl ParsedQueries {
    /// `request`'s parsed document, from the cache when its text is there.
    /// The lock is held only to look up or insert: each request's own copy
    /// (the executor changes it) is made outside it.
    pub fn parse<'r>(&self, request: &'r mut Request) -> Result<Parsed<'r>, ServerError> {
        let keep = request.query.len() <= MAX_QUERY_LEN;
        let kept = if keep {
            let mut kept = self.lock();
            kept.lookups += 1;
            kept.docs.get_mut(&request.query).map(|entry| {
                entry.used = true;
                (entry.doc.clone(), entry.merges_objects)
            })
        } else {
            None
        };
        if let Some((doc, merges_objects)) = kept {
            request.set_parsed_query(ExecutableDocument::clone(&doc));
            let doc = request.parsed_query()?;
            return Ok(Parsed {
                doc,
                merges_objects,
            });
        }
        let query = keep.then(|| request.query.clone());
        let doc = request.parsed_query()?;
        let merges_objects = !keep || merges_objects(doc);
        if let Some(query) = query {
            let entry = Entry {
                doc: Arc::new(doc.clone()),
                merges_objects,
                used: false,
            };
            let len = query.len();
            let dropped = {
                let mut kept = self.lock();
                // Another request may have kept the same text meanwhile.
                let new = !kept.docs.contains_key(&query);
                let dropped = if new && kept.text + len > MAX_KEPT_TEXT {
                    kept.make_room()
                } else {
                    Vec::new()
                };
                if kept.text + len <= MAX_KEPT_TEXT && kept.docs.insert(query, entry).is_none() {
                    kept.text += len;
                }
                dropped
            };
            // The documents let go of are freed after the lock is released.
            drop(dropped);
        }
        Ok(Parsed {
            doc,
            merges_objects,
        })
    }

    /// How many documents are kept.
    pub fn len(&self) -> usize {
        self.lock().docs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves a map that is still whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether executing `doc` may merge two objects: some selection set, its
/// fragments spread in, asks one response key twice, at least once with a
/// selection set of its own. The executor resolves each of the two and
/// merges their values, which it cannot do with JSON written in advance.
/// (Two leaves under one key are one value, asked twice.)
pub fn merges_objects(doc: &ExecutableDocument) -> bool {
    Walk::new(doc).merges_objects()
}

/// Each response key of a selection set, and whether one of its fields
/// has a selection set; `None` once one such key is asked twice.
type Keys<'d> = Option<HashMap<&'d str, bool>>;

/// The walk behind [`merges_objects`]. Its work grows with the document's
/// text, not with how often its parts are spread: each fragment's keys are
/// found once, a fragment spread twice into one selection set is not
/// counted twice, and the keys of an inline fragment are counted once,
/// in the selection set it is part of.
struct Walk<'d> {
    doc: &'d ExecutableDocument,
    /// Each fragment's keys, found once however often it is spread (a
    /// cycle, which validation refuses, spreads nothing the second time).
    spread: HashMap<&'d Name, Rc<Keys<'d>>>,
    /// Keys added so far (the walk's work, which tests bound).
    added: usize,
}

impl<'d> Walk<'d> {
    fn new(doc: &'d ExecutableDocument) -> Self {
        Walk {
            doc,
            spread: HashMap::new(),
            added: 0,
        }
    }

    fn merges_objects(&mut self) -> bool {
        let doc = self.doc;
        let mut sets = doc.operations.iter().map(|(_, op)| &op.node.selection_set);
        sets.any(|set| self.merges(&set.node))
            || doc
                .fragments
                .values()
                .any(|fragment| self.merges(&fragment.node.selection_set.node))
    }

    /// Whether `set` or a selection set inside it merges objects (a
    /// fragment's are checked as the fragment's).
    fn merges(&mut self, set: &'d SelectionSet) -> bool {
        let mut keys = Some(HashMap::new());
        self.keys(set, &mut keys, &mut HashSet::new());
        keys.is_none() || self.inside(set)
    }

    /// Whether a selection set of one of `set`'s fields merges objects,
    /// inline fragments looked into (their keys are `set`'s own).
    fn inside(&mut self, set: &'d SelectionSet) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => self.merges(&field.node.selection_set.node),
            Selection::InlineFragment(inline) => self.inside(&inline.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }

    /// Adds `set`'s keys, inline fragments and fragments spread in, to
    /// `keys`; `spread` holds the fragments already spread into them.
    fn keys(&mut self, set: &'d SelectionSet, keys: &mut Keys<'d>, spread: &mut HashSet<&'d Name>) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let key = field.node.response_key().node.as_str();
                    self.add(keys, key, !field.node.selection_set.node.items.is_empty());
                }
                Selection::InlineFragment(inline) => {
                    self.keys(&inline.node.selection_set.node, keys, spread)
                }
                Selection::FragmentSpread(fragment) => {
                    let name = &fragment.node.fragment_name.node;
                    let found = self.fragment_keys(name);
                    match found.as_ref() {
                        // Spread again: only a key with a selection set of
                        // its own would be merged.
                        Some(found) if !spread.insert(name) => {
                            if found.values().any(|nested| *nested) {
                                *keys = None;
                            }
                        }
                        Some(found) => {
                            for (key, nested) in found {
                                self.add(keys, key, *nested);
                            }
                        }
                        None => *keys = None,
                    }
                }
            }
            if keys.is_none() {
                return;
            }
        }
    }

    /// The keys of the fragment `name` (none if the document has no such
    /// fragment: validation reports it).
    fn fragment_keys(&mut self, name: &'d Name) -> Rc<Keys<'d>> {
        if let Some(found) = self.spread.get(name) {
            return found.clone();
        }
        self.spread.insert(name, Rc::new(Some(HashMap::new())));
        let mut own = Some(HashMap::new());
        if let Some(fragment) = self.doc.fragments.get(name) {
            self.keys(
                &fragment.node.selection_set.node,
                &mut own,
                &mut HashSet::new(),
            );
        }
        let own = Rc::new(own);
        self.spread.insert(name, own.clone());
        own
    }

    /// Adds `key` to `keys`, which become `None` if it was there already
    /// and either of the two has a selection set.
    fn add(&mut self, keys: &mut Keys<'d>, key: &'d str, nested: bool) {
        self.added += 1;
        if let Some(map) = keys
            && let Some(seen) = map.insert(key, nested)
            && (seen || nested)
        {
            *keys = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Request {
        Request::new(query)
    }

    #[test]
    fn a_kept_document_is_the_one_parsed() {
        let cache = ParsedQueries::default();
        let text = "query Q($n: Int) { projects(first: $n) { edges { node { id } } } }";
        let first = format!("{:?}", cache.parse(&mut request(text)).unwrap());
        assert_eq!(cache.len(), 1);
        let again = format!("{:?}", cache.parse(&mut request(text)).unwrap());
        assert_eq!(first, again);
        assert_eq!(cache.len(), 1);
        // Another text is another document, not the kept one.
        let other = format!("{:?}", cache.parse(&mut request("{ me { id } }")).unwrap());
        assert_ne!(first, other);
        assert_eq!(cache.len(), 2);
    }

    fn merges(query: &str) -> bool {
        merges_objects(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn a_key_asked_twice_with_selections_merges_objects_wherever_it_is() {
        let dashboard = "{ projects(first: 10) { edges { node { id name tasks(first: 20) { edges { node { id title status assignee { id displayName } } } } } } } }";
        assert!(!merges(dashboard));
        // Leaves asked twice are one value; aliases are other keys.
        assert!(!merges(
            "{ me { id id ...F } } fragment F on User { id email }"
        ));
        assert!(!merges(
            "{ a: tasks { totalCount } b: tasks { totalCount } }"
        ));
        for query in [
            "{ tasks { totalCount } tasks { nodes { id } } }",
            "{ projects { nodes { tasks { nodes { id } } tasks { totalCount } } } }",
            "{ projects { nodes { ...A ...B } } } fragment A on Project { tasks { totalCount } } fragment B on Project { tasks { nodes { id } } }",
            "{ projects { nodes { ... on Project { tasks { totalCount } } tasks { nodes { id } } } } }",
            // In a fragment's own selections, or in one spread twice.
            "{ me { ...F } } fragment F on User { roles { id } roles { key } }",
            "{ me { ...F ...F } } fragment F on User { roles { id } }",
        ] {
            assert!(merges(query), "{query}");
        }
    }

    #[test]
    fn fragments_spread_in_cycles_or_many_times_over_are_walked_once() {
        // Validation refuses a cycle later; the walk must end before it.
        assert!(!merges("{ me { ...F } } fragment F on User { id ...F }"));
        // Each fragment spreads the next twice: 2^40 copies if walked whole.
        let mut query = String::from("{ me { ...F0 } }");
        for i in 0..40 {
            query += &format!(" fragment F{i} on User {{ ...F{n} ...F{n} id }}", n = i + 1);
        }
        query += " fragment F40 on User { email }";
        assert!(!merges(&query));
        assert!(merges(&query.replace("{ email }", "{ roles { id } }")));
    }

    #[test]
    fn the_walk_grows_with_the_text_not_with_nesting_or_repeated_spreads() {
        // 60 inline fragments deep, a fragment of 1,280 keys spread 960
        // times at the bottom: about 7.4e7 keys if each level and each
        // spread counted them again; 1,280 once found and once added.
        let names: Vec<String> = (0..1280).map(|i| format!("k{i}")).collect();
        let fragment = format!("fragment F on Query {{ {} }}", names.join(" "));
        let spreads = "...F ".repeat(960);
        let query = format!(
            "{{ {}{spreads}{} }} {fragment}",
            "... { ".repeat(60),
            "} ".repeat(60)
        );
        let doc = async_graphql::parser::parse_query(&query).unwrap();
        let mut walk = Walk::new(&doc);
        assert!(!walk.merges_objects());
        assert!(walk.added <= 3 * 1280, "{} keys added", walk.added);
    }

    #[test]
    fn a_text_too_long_to_keep_is_taken_to_merge_objects() {
        let cache = ParsedQueries::default();
        let short = "{ me { id } }";
        assert!(!cache.parse(&mut request(short)).unwrap().merges_objects);
        assert!(
            !cache.parse(&mut request(short)).unwrap().merges_objects,
            "kept"
        );
        let long = format!("{{ me {{ id }} }} #{}", "x".repeat(MAX_QUERY_LEN));
        assert!(cache.parse(&mut request(&long)).unwrap().merges_objects);
    }

    #[test]
    fn a_query_that_does_not_parse_is_an_error_and_not_kept() {
        let cache = ParsedQueries::default();
        for _ in 0..2 {
            assert!(cache.parse(&mut request("{ projects {")).is_err());
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = ParsedQueries::default();
        let mut kept_text = 0;
        for i in 0..10_000 {
            let text = format!("{{ a{i}: me {{ id }} }}");
            cache.parse(&mut request(&text)).unwrap();
            kept_text = cache.0.lock().unwrap().text;
            assert!(kept_text <= MAX_KEPT_TEXT);
        }
        assert!(kept_text > 0);
        assert_eq!(
            kept_text,
            cache
                .0
                .lock()
                .unwrap()
                .docs
                .keys()
                .map(String::len)
                .sum::<usize>(),
            "the count of kept text is right after making room"
        );
        // Full, it still takes new texts in once it has made room.
        let mut recent = (6_500..10_000).map(|i| format!("{{ a{i}: me {{ id }} }}"));
        let kept = cache.0.lock().unwrap();
        assert!(recent.any(|text| kept.docs.contains_key(&text)));
        drop(kept);
        let long = format!("{{ me {{ id }} }} #{}", "x".repeat(MAX_QUERY_LEN));
        let before = cache.len();
        cache.parse(&mut request(&long)).unwrap();
        assert_eq!(cache.len(), before, "a long text is parsed, not kept");
    }

    #[test]
    fn a_text_in_use_outlasts_a_flood_of_texts_sent_once_or_twice() {
        for sends in [1, 2] {
            let cache = ParsedQueries::default();
            let dashboard = "{ projects(first: 10) { edges { node { id name } } } }";
            cache.parse(&mut request(dashboard)).unwrap();
            for i in 0..20_000 {
                let text = format!("{{ a{i}: me {{ id }} }}");
                for _ in 0..sends {
                    cache.parse(&mut request(&text)).unwrap();
                }
                if i % 100 == 0 {
                    cache.parse(&mut request(dashboard)).unwrap();
                }
                assert!(
                    cache.0.lock().unwrap().docs.contains_key(dashboard),
                    "pushed out after {i} texts sent {sends} times"
                );
            }
        }
    }
}
