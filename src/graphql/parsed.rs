//! Parsed queries, kept by their text.
//!
//! A dashboard sends the same few query texts over and over, and parsing
//! one (async-graphql's parser is built on pest) was 7 % of the server's
//! CPU per dashboard request (BENCHMARKS.md, "Parsing, timers, cursors").
//! A copy of the parsed document costs a fraction of that. Only documents
//! that parsed are kept; validation still runs on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};

/// Longest query text kept (longer ones are parsed every time).
pub const MAX_QUERY_LEN: usize = 8 * 1024;
/// Most query text kept in all; when a new one would pass it, the cache
/// starts over. A document takes up to about 110 times its text (a field
/// per two characters), so this bounds the cache near 7 MB.
pub const MAX_KEPT_TEXT: usize = 64 * 1024;

/// Documents parsed from query texts up to [`MAX_QUERY_LEN`] bytes, their
/// texts [`MAX_KEPT_TEXT`] bytes at most in all.
#[derive(Default)]
pub struct ParsedQueries(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    docs: HashMap<String, Arc<ExecutableDocument>>,
    text: usize,
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
            self.lock().docs.get(&request.query).cloned()
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
            let shared = Arc::new(doc.clone());
            let len = query.len();
            let dropped = {
                let mut kept = self.lock();
                let full = !kept.docs.contains_key(&query) && kept.text + len > MAX_KEPT_TEXT;
                let dropped = full.then(|| std::mem::take(&mut *kept));
                // Another request may have kept the same text meanwhile.
                if kept.docs.insert(query, shared).is_none() {
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
        let long = format!("{{ me {{ id }} }} #{}", "x".repeat(MAX_QUERY_LEN));
        let before = cache.len();
        cache.parse(&mut request(&long)).unwrap();
        assert_eq!(cache.len(), before, "a long text is parsed, not kept");
    }
}
