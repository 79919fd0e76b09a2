//! Parsed GraphQL documents, kept by the BLAKE3 hash of their text so that a query sent
//! again (clients send the same few queries over and over) skips parsing and the fragment
//! expansion guard. Parsing is a sizeable part of a small read's cost.
//!
//! Invariants: only a document that parsed and passed [`expanded_size`] is kept, so a
//! request served from the cache is exactly as checked as one parsed afresh; the cache
//! holds at most [`DOCUMENT_CACHE`] documents of at most [`MAX_CACHED_QUERY_BYTES`] of text
//! each, least recently used dropped first.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

use super::expansion::{expanded_size, MAX_EXPANDED_SELECTIONS};

/// Most documents kept.
pub const DOCUMENT_CACHE: usize = 1024;

/// Longest query text (bytes) whose document is kept.
pub const MAX_CACHED_QUERY_BYTES: usize = 16 * 1024;

/// The longest query document parsed, in bytes (variables are apart and held to the body
/// limit): a hostile document of a megabyte took seconds of parsing before it was refused.
pub const MAX_QUERY_BYTES: usize = 128 * 1024;

/// The cache of checked documents.
#[derive(Debug)]
pub struct Documents {
    cache: Mutex<lru::LruCache<[u8; 32], Arc<ExecutableDocument>>>,
}

impl Default for Documents {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(DOCUMENT_CACHE).unwrap_or(NonZeroUsize::MIN);
        Documents { cache: Mutex::new(lru::LruCache::new(capacity)) }
    }
}

impl Documents {
    /// Gives `request` its parsed document, from the cache or by parsing (a parse error is
    /// left for execution to report, as async-graphql words it).
    ///
    /// # Errors
    /// A message when there is no document, when it is longer than [`MAX_QUERY_BYTES`], or
    /// when it expands to more than [`MAX_EXPANDED_SELECTIONS`] selections once its
    /// fragments are spread.
    pub fn prepare(&self, request: &mut async_graphql::Request) -> Result<(), String> {
        // Parsing costs with the text, and comes before anything else (the caller is not
        // known yet): a document longer than any real query is not parsed at all.
        if request.query.trim().is_empty() {
            return Err("the request has no query (send {\"query\": \"...\"})".into());
        }
        if request.query.len() > MAX_QUERY_BYTES {
            return Err(format!(
                "the query document is {} bytes, more than {MAX_QUERY_BYTES}: send long values (an import's text) \
                 as variables",
                request.query.len()
            ));
        }
        let key = *blake3::hash(request.query.as_bytes()).as_bytes();
        let cached = self.cache.lock().ok().and_then(|mut cache| cache.get(&key).cloned());
        if let Some(document) = cached {
            request.set_parsed_query((*document).clone());
            return Ok(());
        }
        let keep = request.query.len() <= MAX_CACHED_QUERY_BYTES;
        let Ok(document) = request.parsed_query() else { return Ok(()) };
        if expanded_size(document).is_none() {
            return Err(format!(
                "the query holds more than {MAX_EXPANDED_SELECTIONS} selections, arguments, directives and variables once its fragments are spread"
            ));
        }
        if keep {
            let document = Arc::new(document.clone());
            if let Ok(mut cache) = self.cache.lock() {
                cache.put(key, document);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chained_fragments(depth: usize) -> String {
        let mut query = String::from("query { me { ...F0 } }\n");
        for i in 0..depth {
            query.push_str(&format!("fragment F{i} on Me {{ ...F{} ...F{} }}\n", i + 1, i + 1));
        }
        query.push_str(&format!("fragment F{depth} on Me {{ name }}\n"));
        query
    }

    #[test]
    fn a_repeated_query_is_served_from_the_cache_and_an_exploding_one_never_is() {
        let documents = Documents::default();
        let text = "query { me { name } }";
        let mut first = async_graphql::Request::new(text);
        documents.prepare(&mut first).unwrap();
        assert_eq!(documents.cache.lock().unwrap().len(), 1);
        let mut again = async_graphql::Request::new(text);
        documents.prepare(&mut again).unwrap();
        assert_eq!(again.parsed_query().unwrap().operations.iter().count(), 1);
        assert_eq!(documents.cache.lock().unwrap().len(), 1, "the same text is one entry");

        let bomb = chained_fragments(24);
        for _ in 0..2 {
            let err = documents.prepare(&mut async_graphql::Request::new(bomb.as_str())).unwrap_err();
            assert!(err.contains("selections"), "{err}");
        }
        assert_eq!(documents.cache.lock().unwrap().len(), 1, "a refused document is not kept");

        documents.prepare(&mut async_graphql::Request::new("query {")).unwrap();
        assert_eq!(documents.cache.lock().unwrap().len(), 1, "an unparsable document is not kept");
    }
}
