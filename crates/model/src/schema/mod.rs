//! The model's shapes as static data: every constraint trait, member name
//! and HTTP binding, for code that walks requests generically (validation,
//! documentation, clients that build URIs).

mod generated;

use std::sync::OnceLock;

use regex::Regex;

pub use generated::*;

/// A Rust type generated from a shape of the model.
pub trait Shaped {
    /// The shape the type was generated from.
    const SHAPE: &'static Shape;
}

/// One shape of the model.
#[derive(Debug)]
pub enum Shape {
    /// A string, possibly an enum.
    String(StringShape),
    /// A 32-bit integer.
    Integer(NumberShape),
    /// A 64-bit integer.
    Long(NumberShape),
    /// Epoch seconds, whole or fractional.
    Timestamp(&'static str),
    /// A list of one member shape.
    List(ListShape),
    /// A map from a string shape to a value shape.
    Map(MapShape),
    /// A structure of named members.
    Structure(StructureShape),
}

impl Shape {
    /// The shape's name in the model.
    pub fn name(&self) -> &'static str {
        match self {
            Shape::String(s) => s.name,
            Shape::Integer(n) | Shape::Long(n) => n.name,
            Shape::Timestamp(name) => name,
            Shape::List(l) => l.name,
            Shape::Map(m) => m.name,
            Shape::Structure(s) => s.name,
        }
    }

    /// Whether the model marks values of this shape sensitive (never echoed
    /// back in messages or logs). A list is sensitive when its members are.
    pub fn is_sensitive(&self) -> bool {
        match self {
            Shape::String(s) => s.sensitive,
            Shape::List(l) => l.member.is_sensitive(),
            _ => false,
        }
    }
}

/// A string shape and its traits.
#[derive(Debug)]
pub struct StringShape {
    /// The shape's name in the model.
    pub name: &'static str,
    /// Least length, in Unicode scalar values.
    pub min: Option<u64>,
    /// Greatest length, in Unicode scalar values.
    pub max: Option<u64>,
    /// The regular expression a value must match, if any.
    pub pattern: Option<&'static Pattern>,
    /// The allowed values, for an enum.
    pub enum_values: Option<&'static [&'static str]>,
    /// Whether values are kept out of messages and logs.
    pub sensitive: bool,
}

/// An integer shape and its `range` trait.
#[derive(Debug)]
pub struct NumberShape {
    /// The shape's name in the model.
    pub name: &'static str,
    /// Least value.
    pub min: Option<i64>,
    /// Greatest value.
    pub max: Option<i64>,
}

/// A list shape and its `length` trait (item counts).
#[derive(Debug)]
pub struct ListShape {
    /// The shape's name in the model.
    pub name: &'static str,
    /// The items' shape.
    pub member: &'static Shape,
    /// Fewest items.
    pub min: Option<u64>,
    /// Most items.
    pub max: Option<u64>,
}

/// A map shape and its `length` trait (entry counts).
#[derive(Debug)]
pub struct MapShape {
    /// The shape's name in the model.
    pub name: &'static str,
    /// The keys' shape.
    pub key: &'static Shape,
    /// The values' shape.
    pub value: &'static Shape,
    /// Fewest entries.
    pub min: Option<u64>,
    /// Most entries.
    pub max: Option<u64>,
}

/// A structure shape.
#[derive(Debug)]
pub struct StructureShape {
    /// The shape's name in the model.
    pub name: &'static str,
    /// The members, in the model's order.
    pub members: &'static [Member],
}

/// A member of a structure.
#[derive(Debug)]
pub struct Member {
    /// The name on the wire (`ExportDataSource`).
    pub name: &'static str,
    /// The name in validation messages, AWS-style (`exportDataSource`).
    pub path_name: &'static str,
    /// The member's shape.
    pub shape: &'static Shape,
    /// Whether a request must carry it.
    pub required: bool,
    /// Where it travels.
    pub location: Location,
}

/// Where a member travels in an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// In the JSON body.
    Body,
    /// In the URI, as the `{label}` of the same name.
    Uri,
}

/// A `pattern` trait: the regular expression as the model spells it,
/// compiled on first use.
#[derive(Debug)]
pub struct Pattern {
    /// The expression as the model spells it.
    pub source: &'static str,
    compiled: OnceLock<Regex>,
}

impl Pattern {
    pub(crate) const fn new(source: &'static str) -> Self {
        Pattern {
            source,
            compiled: OnceLock::new(),
        }
    }

    /// Whether `value` matches. Model patterns carry their own anchors.
    pub fn is_match(&self, value: &str) -> bool {
        self.compiled
            .get_or_init(|| {
                // Every pattern is compiled by a unit test below, so this
                // cannot fail for a pattern that was generated.
                Regex::new(self.source).unwrap_or_else(|e| panic!("model pattern {:?}: {e}", self.source))
            })
            .is_match(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_pattern_compiles() {
        for pattern in PATTERNS {
            assert!(Regex::new(pattern.source).is_ok(), "{}", pattern.source);
        }
    }

    #[test]
    fn s3_url_pattern_behaves_as_in_the_model() {
        let p = &S3_URL_PATTERN;
        assert!(p.is_match("s3://bucket/key"));
        assert!(p.is_match("s3://bucket/prefix/"));
        assert!(!p.is_match("s3://bucket/"));
        assert!(!p.is_match("https://bucket/key"));
    }
}
