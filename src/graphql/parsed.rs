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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};

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

impl ParsedQueries {
    /// `request`'s parsed document, from the cache when its text is there.
    /// The lock is held only to look up or insert: each request's own copy
    /// (the executor changes it) is made outside it.
    pub fn parse<'r>(
        &self,
        request: &'r mut Request,
    ) -> Result<&'r ExecutableDocument, ServerError> {
        let keep = request.query.len() <= MAX_QUERY_LEN;
        let kept = if keep {
            let mut kept = self.lock();
            kept.lookups += 1;
            kept.docs.get_mut(&request.query).map(|entry| {
                entry.used = true;
                entry.doc.clone()
            })
        } else {
            None
        };
        if let Some(doc) = kept {
            request.set_parsed_query(ExecutableDocument::clone(&doc));
            return request.parsed_query();
        }
        let query = keep.then(|| request.query.clone());
        let doc = request.parsed_query()?;
        if let Some(query) = query {
            let entry = Entry {
                doc: Arc::new(doc.clone()),
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
        Ok(doc)
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
