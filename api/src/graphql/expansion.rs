//! A guard against documents whose size explodes when fragments are expanded: a fragment
//! that spreads another twice, chained 24 deep, is about a kilobyte of text and 16 million
//! fields once expanded, and async-graphql's validation walks the expansion before its
//! depth and complexity limits look at anything (and before a request timeout can fire,
//! since that walk never yields). This counts the expanded selections of the document with
//! one memoised pass over its fragments, and refuses it above [`MAX_EXPANDED_SELECTIONS`].
//!
//! Arguments, directives and variable definitions count too: a megabyte of `f(a:1,a:1,…)`
//! would otherwise reach validation, which answers one error per repeated argument (half a
//! million errors, a gigabyte of memory, a 70 MB answer).

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// The most selections (fields, spreads and inline fragments, counted once per place they
/// are expanded into, with their arguments and directives) and variable definitions a
/// document may hold.
pub const MAX_EXPANDED_SELECTIONS: u64 = 10_000;

/// The expanded size of `document`, or `None` if it exceeds the limit (or a fragment spreads
/// itself, which validation refuses anyway).
#[must_use]
pub fn expanded_size(document: &ExecutableDocument) -> Option<u64> {
    let mut sizes: HashMap<String, Option<u64>> = HashMap::new();
    let mut total: u64 = 0;
    for (_, operation) in document.operations.iter() {
        let variables = u64::try_from(operation.node.variable_definitions.len()).ok()?;
        total = total.checked_add(variables)?;
        total = total.checked_add(size_of(&operation.node.selection_set.node, document, &mut sizes, 0)?)?;
        if total > MAX_EXPANDED_SELECTIONS {
            return None;
        }
    }
    (total <= MAX_EXPANDED_SELECTIONS).then_some(total)
}

fn size_of(
    set: &SelectionSet,
    document: &ExecutableDocument,
    sizes: &mut HashMap<String, Option<u64>>,
    depth: usize,
) -> Option<u64> {
    // Fragments nest at most as deep as there are fragments; deeper means a cycle.
    if depth > document.fragments.len() + 1 {
        return None;
    }
    let mut total: u64 = 0;
    for item in &set.items {
        let size = match &item.node {
            Selection::Field(field) => {
                let own = field.node.arguments.len() + field.node.directives.len();
                1 + u64::try_from(own).ok()? + size_of(&field.node.selection_set.node, document, sizes, depth)?
            }
            Selection::InlineFragment(inline) => {
                let own = u64::try_from(inline.node.directives.len()).ok()?;
                1 + own + size_of(&inline.node.selection_set.node, document, sizes, depth)?
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                let known = match sizes.get(name) {
                    Some(known) => *known,
                    None => {
                        // Unknown fragments are left to validation, which names them.
                        let size = match document.fragments.get(name) {
                            Some(fragment) => size_of(&fragment.node.selection_set.node, document, sizes, depth + 1),
                            None => Some(0),
                        };
                        sizes.insert(name.to_owned(), size);
                        size
                    }
                };
                1 + known?
            }
        };
        total = total.checked_add(size)?;
        if total > MAX_EXPANDED_SELECTIONS {
            return None;
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> String {
        let mut text = String::from("query { __typename ...F0 }");
        for i in 0..n {
            text.push_str(&format!(" fragment F{i} on Query {{ __typename ...F{next} ...F{next} }}", next = i + 1));
        }
        text.push_str(&format!(" fragment F{n} on Query {{ __typename }}"));
        text
    }

    #[test]
    fn a_doubling_fragment_chain_is_refused_and_ordinary_documents_pass() {
        let parse = |text: &str| async_graphql::parser::parse_query(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(expanded_size(&parse(&chain(8))).is_some(), "2^9 selections is fine");
        assert_eq!(expanded_size(&parse(&chain(24))), None);
        assert_eq!(expanded_size(&parse(&chain(60))), None, "no overflow, no stack exhaustion");
        let ordinary = "query($id: String!) { customer(id: $id) { ...C } me { username } } fragment C on CustomerNode { id name phones }";
        assert_eq!(expanded_size(&parse(ordinary)), Some(9), "7 selections, 1 argument, 1 variable");
        let repeated = format!("{{ me({}) {{ username }} }}", vec!["a:1"; 20_000].join(","));
        assert_eq!(expanded_size(&parse(&repeated)), None, "a flood of arguments is refused before validation");
        let variables = format!(
            "query({}) {{ me {{ username }} }}",
            (0..20_000).map(|i| format!("$v{i}: Int")).collect::<Vec<_>>().join(",")
        );
        assert_eq!(expanded_size(&parse(&variables)), None);
        let cycle = "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert_eq!(expanded_size(&parse(cycle)), None);
    }
}
