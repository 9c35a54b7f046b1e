//! Score placeholders: `${metadata.name}`, `${resources.db.host}`, and the
//! `$${...}` escape for a literal `${...}`.

use thiserror::Error;

/// A piece of a string after placeholder parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Placeholder(Placeholder),
}

/// One `${a.b.c}` reference, with its byte range in the original string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub start: usize,
    pub end: usize,
    pub path: Vec<String>,
}

impl Placeholder {
    pub fn text(&self) -> String {
        format!("${{{}}}", self.path.join("."))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlaceholderError {
    #[error("unterminated placeholder: `${{` without a closing `}}`")]
    Unterminated { offset: usize },
    #[error("empty placeholder `${{}}`")]
    Empty { offset: usize },
    #[error("placeholder `{text}` has an empty segment")]
    EmptySegment { offset: usize, text: String },
}

impl PlaceholderError {
    pub fn offset(&self) -> usize {
        match self {
            PlaceholderError::Unterminated { offset }
            | PlaceholderError::Empty { offset }
            | PlaceholderError::EmptySegment { offset, .. } => *offset,
        }
    }
}

/// Splits a string into literals and placeholders. `$${` yields a literal `${`.
pub fn parse(s: &str) -> Result<Vec<Segment>, PlaceholderError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    let bytes = s.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'$' && s[i..].starts_with("$${") {
            literal.push_str("${");
            i += 3;
        } else if bytes[i] == b'$' && s[i..].starts_with("${") {
            let close = s[i + 2..].find('}').ok_or(PlaceholderError::Unterminated { offset: i })?;
            let inner = &s[i + 2..i + 2 + close];
            if inner.trim().is_empty() {
                return Err(PlaceholderError::Empty { offset: i });
            }
            let path: Vec<String> = inner.split('.').map(|p| p.trim().to_string()).collect();
            if path.iter().any(String::is_empty) {
                return Err(PlaceholderError::EmptySegment { offset: i, text: format!("${{{inner}}}") });
            }
            if !literal.is_empty() {
                out.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            let end = i + 2 + close + 1;
            out.push(Segment::Placeholder(Placeholder { start: i, end, path }));
            i = end;
        } else {
            let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
            literal.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    if !literal.is_empty() {
        out.push(Segment::Literal(literal));
    }
    Ok(out)
}

/// Only the placeholders of a string.
pub fn placeholders(s: &str) -> Result<Vec<Placeholder>, PlaceholderError> {
    Ok(parse(s)?
        .into_iter()
        .filter_map(|seg| match seg {
            Segment::Placeholder(p) => Some(p),
            Segment::Literal(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_references_and_escapes() {
        let segs = parse("postgres://${resources.db.host}:$${PORT}/x").unwrap();
        assert_eq!(
            segs,
            vec![
                Segment::Literal("postgres://".into()),
                Segment::Placeholder(Placeholder {
                    start: 11,
                    end: 31,
                    path: vec!["resources".into(), "db".into(), "host".into()]
                }),
                Segment::Literal(":${PORT}/x".into()),
            ]
        );
    }

    #[test]
    fn reports_malformed_placeholders_with_offsets() {
        assert_eq!(parse("a ${resources.db"), Err(PlaceholderError::Unterminated { offset: 2 }));
        assert_eq!(parse("${}"), Err(PlaceholderError::Empty { offset: 0 }));
        assert!(matches!(parse("x${a..b}"), Err(PlaceholderError::EmptySegment { offset: 1, .. })));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = parse(&s);
        }

        #[test]
        fn text_without_dollar_is_one_literal(s in "[^$]+") {
            prop_assert_eq!(parse(&s).unwrap(), vec![Segment::Literal(s.clone())]);
        }
    }
}
