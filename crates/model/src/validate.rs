//! Request parsing: JSON to a typed input, with every constraint of the
//! model checked first and every violation reported at once, in AWS's words.
//!
//! The body is read loosely into a `serde_json::Value`, walked against the
//! shape's [`schema`](crate::schema), and only then turned into the typed
//! input, so code that holds a typed input knows it satisfies the model.
//! Cheap checks (types, counts, lengths, ranges, enums) run during the walk;
//! patterns run afterwards and only on strings whose length was fine, and
//! the members of an over-long list are not visited at all.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Timestamp;
use crate::schema::Pattern;
use crate::schema::{Location, Shape, Shaped, StringShape};

/// One violated constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, AWS-style: `exportDataSource.metricsDataSource.metrics.1.member.name`.
    pub path: String,
    /// The offending value as AWS echoes it; `None` for a missing value.
    pub value: Option<String>,
    /// The constraint, e.g. `Member must not be null`.
    pub constraint: String,
}

/// How sensitive values are echoed.
const REDACTED: &str = "*** Sensitive Data Redacted ***";
/// Longest echo of a value in a message, in characters.
const MAX_ECHO_CHARS: usize = 256;

impl Violation {
    /// A violation of `constraint` by `value` at `path`.
    pub fn new(path: impl Into<String>, value: Option<String>, constraint: impl Into<String>) -> Self {
        Violation {
            path: path.into(),
            value,
            constraint: constraint.into(),
        }
    }

    /// A violation by a JSON value, echoed as AWS does (or redacted).
    fn of(path: &str, value: &Value, sensitive: bool, constraint: impl Into<String>) -> Self {
        let echo = if sensitive { REDACTED.to_owned() } else { echo(value) };
        Violation::new(path, Some(echo), constraint)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "Value '{value}'")?,
            None => f.write_str("Value null")?,
        }
        write!(
            f,
            " at '{}' failed to satisfy constraint: {}",
            self.path, self.constraint
        )
    }
}

/// Why a request body was refused. Both render as a `BadRequestException`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// Not JSON, or not a JSON object.
    Malformed(String),
    /// JSON that breaks the model's constraints; never empty.
    Invalid(Vec<Violation>),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Malformed(reason) => f.write_str(reason),
            InputError::Invalid(violations) => {
                let n = violations.len();
                write!(f, "{n} validation error{} detected: ", if n == 1 { "" } else { "s" })?;
                for (i, v) in violations.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for InputError {}

/// Parses an operation's input from its JSON body and URI labels.
///
/// An empty body stands for `{}`. Labels (`("JobId", "...")`) fill the
/// members bound to the URI and are checked like any member.
pub fn parse_input<T: Shaped + DeserializeOwned>(body: &[u8], labels: &[(&str, &str)]) -> Result<T, InputError> {
    let mut value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| InputError::Malformed(format!("Unable to parse request body: {e}")))?
    };
    let Value::Object(object) = &mut value else {
        return Err(InputError::Malformed(
            "Unable to parse request body: expected a JSON object".to_owned(),
        ));
    };
    if let Shape::Structure(structure) = T::SHAPE {
        for member in structure.members.iter().filter(|m| m.location == Location::Uri) {
            object.remove(member.name);
        }
    }
    for (name, label) in labels {
        object.insert((*name).to_owned(), Value::String((*label).to_owned()));
    }

    let violations = check(T::SHAPE, &value);
    if !violations.is_empty() {
        return Err(InputError::Invalid(violations));
    }
    serde_json::from_value(value).map_err(|e| InputError::Malformed(format!("Unable to parse request body: {e}")))
}

/// Every violation of the model's constraints in a typed input, as
/// [`parse_input`] would report them for its JSON: what a caller that
/// builds inputs in Rust (an embedder of the service) is held to.
pub fn violations<T: Shaped + serde::Serialize>(input: &T) -> Vec<Violation> {
    match serde_json::to_value(input) {
        Ok(value) => check(T::SHAPE, &value),
        Err(e) => vec![Violation::new("", None, format!("Member could not be encoded: {e}"))],
    }
}

/// Every violation of `shape`'s constraints in `value`: cheap ones first,
/// then patterns.
pub(crate) fn check(shape: &'static Shape, value: &Value) -> Vec<Violation> {
    let mut checker = Checker::default();
    checker.value(shape, value, "");
    checker.finish()
}

#[derive(Default)]
struct Checker<'v> {
    violations: Vec<Violation>,
    /// Pattern checks, run after everything cheaper.
    deferred: Vec<(String, &'v str, &'static Pattern, bool)>,
}

impl<'v> Checker<'v> {
    fn finish(mut self) -> Vec<Violation> {
        for (path, text, pattern, sensitive) in std::mem::take(&mut self.deferred) {
            if !pattern.is_match(text) {
                let constraint = format!("Member must satisfy regular expression pattern: {}", pattern.source);
                self.violations.push(Violation::of(
                    &path,
                    &Value::String(text.to_owned()),
                    sensitive,
                    constraint,
                ));
            }
        }
        self.violations
    }

    fn push(&mut self, path: &str, value: &Value, shape: &Shape, constraint: impl Into<String>) {
        self.violations
            .push(Violation::of(path, value, shape.is_sensitive(), constraint));
    }

    fn value(&mut self, shape: &'static Shape, value: &'v Value, path: &str) {
        match shape {
            Shape::Structure(structure) => {
                let Value::Object(object) = value else {
                    return self.push(path, value, shape, "Member must be a structure");
                };
                for member in structure.members {
                    let child = join(path, member.path_name);
                    match object.get(member.name).filter(|v| !v.is_null()) {
                        Some(v) => self.value(member.shape, v, &child),
                        None if member.required => {
                            self.violations
                                .push(Violation::new(child, None, "Member must not be null"));
                        }
                        None => {}
                    }
                }
            }
            Shape::List(list) => {
                let Value::Array(items) = value else {
                    return self.push(path, value, shape, "Member must be a list");
                };
                if !self.count(items.len(), list.min, list.max, path, value, shape) {
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    let child = format!("{path}.{}.member", i + 1);
                    if item.is_null() {
                        self.violations
                            .push(Violation::new(child, None, "Member must not be null"));
                    } else {
                        self.value(list.member, item, &child);
                    }
                }
            }
            Shape::Map(map) => {
                let Value::Object(entries) = value else {
                    return self.push(path, value, shape, "Member must be a map");
                };
                if !self.count(entries.len(), map.min, map.max, path, value, shape) {
                    return;
                }
                for (key, item) in entries {
                    let key_value = Value::String(key.clone());
                    let mut key_checker = Checker::default();
                    key_checker.value(map.key, &key_value, path);
                    for violation in key_checker.finish() {
                        let constraint = format!("Map keys must satisfy constraint: [{}]", violation.constraint);
                        self.violations.push(Violation::new(path, violation.value, constraint));
                    }
                    let child = join(path, key);
                    if item.is_null() {
                        self.violations
                            .push(Violation::new(child, None, "Member must not be null"));
                    } else {
                        self.value(map.value, item, &child);
                    }
                }
            }
            Shape::String(string) => {
                let Value::String(text) = value else {
                    return self.push(path, value, shape, "Member must be a string");
                };
                self.string(string, text, value, path);
            }
            Shape::Integer(number) | Shape::Long(number) => {
                let bits_ok = |n: i64| matches!(shape, Shape::Long(_)) || i32::try_from(n).is_ok();
                let Some(n) = value.as_i64().filter(|n| bits_ok(*n)) else {
                    let kind = if matches!(shape, Shape::Long(_)) {
                        "a 64-bit"
                    } else {
                        "a 32-bit"
                    };
                    return self.push(path, value, shape, format!("Member must be {kind} integer"));
                };
                if let Some(min) = number.min.filter(|min| n < *min) {
                    self.push(
                        path,
                        value,
                        shape,
                        format!("Member must have value greater than or equal to {min}"),
                    );
                }
                if let Some(max) = number.max.filter(|max| n > *max) {
                    self.push(
                        path,
                        value,
                        shape,
                        format!("Member must have value less than or equal to {max}"),
                    );
                }
            }
            Shape::Timestamp(_) => {
                if !value.is_number() || serde_json::from_value::<Timestamp>(value.clone()).is_err() {
                    self.push(
                        path,
                        value,
                        shape,
                        "Member must be a timestamp in epoch seconds between years 1 and 9999",
                    );
                }
            }
        }
    }

    fn string(&mut self, string: &'static StringShape, text: &'v str, value: &Value, path: &str) {
        let sensitive = string.sensitive;
        if let Some(values) = string.enum_values {
            if !values.contains(&text) {
                let constraint = format!("Member must satisfy enum value set: [{}]", values.join(", "));
                self.violations.push(Violation::of(path, value, sensitive, constraint));
            }
            return;
        }
        let len = text.chars().count() as u64;
        let mut length_ok = true;
        if let Some(min) = string.min.filter(|min| len < *min) {
            length_ok = false;
            self.violations.push(Violation::of(
                path,
                value,
                sensitive,
                format!("Member must have length greater than or equal to {min}"),
            ));
        }
        if let Some(max) = string.max.filter(|max| len > *max) {
            length_ok = false;
            self.violations.push(Violation::of(
                path,
                value,
                sensitive,
                format!("Member must have length less than or equal to {max}"),
            ));
        }
        if let (Some(pattern), true) = (string.pattern, length_ok) {
            self.deferred.push((path.to_owned(), text, pattern, sensitive));
        }
    }

    /// Checks a list's or map's size; `false` when its items are too many to
    /// be worth visiting.
    fn count(
        &mut self,
        len: usize,
        min: Option<u64>,
        max: Option<u64>,
        path: &str,
        value: &Value,
        shape: &Shape,
    ) -> bool {
        let len = len as u64;
        if let Some(min) = min.filter(|min| len < *min) {
            self.push(
                path,
                value,
                shape,
                format!("Member must have length greater than or equal to {min}"),
            );
        }
        match max.filter(|max| len > *max) {
            Some(max) => {
                self.push(
                    path,
                    value,
                    shape,
                    format!("Member must have length less than or equal to {max}"),
                );
                false
            }
            None => true,
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Echoes a JSON value the way AWS's validation messages do: strings bare,
/// lists as `[a, b]`, maps as `{k=v}`; long echoes are cut short.
fn echo(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => out.push_str(s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(item, out);
                    if out.len() > MAX_ECHO_CHARS * 4 {
                        break;
                    }
                }
                out.push(']');
            }
            Value::Object(entries) => {
                out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(key);
                    out.push('=');
                    write(item, out);
                    if out.len() > MAX_ECHO_CHARS * 4 {
                        break;
                    }
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    if out.chars().count() > MAX_ECHO_CHARS {
        out = out.chars().take(MAX_ECHO_CHARS).collect::<String>() + "...";
    }
    out
}
