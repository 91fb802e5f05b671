//! Message-insight filters: `Include` and `Exclude` as docs/metrics.md defines
//! them. Text filters match exactly, by prefix (`abc*`), suffix (`*abc`) or
//! substring (`*abc*`), case-sensitively; `\*` and `\\` stand for a literal
//! `*` and `\`.

use std::fmt;

use ses_export_model::types::{DeliveryEventType, EngagementEventType, MessageInsightsFilters};

use crate::insight::{EventFlags, InsightRecord, shows_every_event};

/// The fields a filter looks at, borrowed: from a record, or from a stored
/// row before it is made into one (so a store can drop what fails without
/// building it).
#[derive(Debug, Clone, Copy)]
pub struct FilterFields<'a> {
    /// SES's message id.
    pub message_id: &'a str,
    /// The first From address (absent when the store left text out).
    pub from_email_address: Option<&'a str>,
    /// The recipient's address.
    pub destination: &'a str,
    /// The subject (absent when the store left text out).
    pub subject: Option<&'a str>,
    /// The recipient's mailbox provider.
    pub isp: &'a str,
    /// The tenant the message was sent for.
    pub tenant_name: Option<&'a str>,
    /// Every flag the record has; filters see what it shows.
    pub flags: EventFlags,
    /// How many recipients the message had.
    pub recipient_count: u32,
    /// [`crate::insight::sample_hash`] of the message id and destination
    /// (a columnar store keeps it per row; others compute it).
    pub sample_hash: u64,
}

impl InsightRecord {
    /// The fields filters look at.
    pub fn filter_fields(&self) -> FilterFields<'_> {
        FilterFields {
            message_id: &self.message_id,
            from_email_address: self.from_email_address.as_deref(),
            destination: &self.destination,
            subject: self.subject.as_deref(),
            isp: &self.isp,
            tenant_name: self.tenant_name.as_deref(),
            flags: self.flags,
            recipient_count: self.recipient_count,
            sample_hash: crate::insight::sample_hash(&self.message_id, &self.destination),
        }
    }
}

/// One text filter value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextPattern {
    /// `*`: any value that is present.
    Any,
    /// `abc`: exactly this value.
    Exact(String),
    /// `abc*`
    Prefix(String),
    /// `*abc`
    Suffix(String),
    /// `*abc*`
    Contains(String),
}

/// Why a text filter value cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// An unescaped `*` that is not the first or last character.
    InnerWildcard,
    /// A `\` before anything but `*` or `\`, or at the end.
    BadEscape,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternError::InnerWildcard => {
                "Member must use * only as the first or last character (write \\* for a literal *)"
            }
            PatternError::BadEscape => "Member must use \\ only before * or \\",
        })
    }
}

impl std::error::Error for PatternError {}

impl TextPattern {
    /// Parses a filter value.
    pub fn parse(text: &str) -> Result<TextPattern, PatternError> {
        let chars: Vec<char> = text.chars().collect();
        let mut literal = String::with_capacity(text.len());
        let (mut leading, mut trailing) = (false, false);
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => match chars.get(i + 1) {
                    Some(c @ ('*' | '\\')) => {
                        literal.push(*c);
                        i += 2;
                        continue;
                    }
                    _ => return Err(PatternError::BadEscape),
                },
                '*' if i == 0 => leading = true,
                '*' if i == chars.len() - 1 => trailing = true,
                '*' => return Err(PatternError::InnerWildcard),
                c => literal.push(c),
            }
            i += 1;
        }
        Ok(match (leading, trailing) {
            (true, _) if chars.len() == 1 => TextPattern::Any,
            (true, true) if literal.is_empty() => TextPattern::Any,
            (false, false) => TextPattern::Exact(literal),
            (false, true) => TextPattern::Prefix(literal),
            (true, false) => TextPattern::Suffix(literal),
            (true, true) => TextPattern::Contains(literal),
        })
    }

    /// Whether a present value matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TextPattern::Any => true,
            TextPattern::Exact(s) => value == s,
            TextPattern::Prefix(s) => value.starts_with(s.as_str()),
            TextPattern::Suffix(s) => value.ends_with(s.as_str()),
            TextPattern::Contains(s) => value.contains(s.as_str()),
        }
    }
}

/// A parsed `Include` or `Exclude`. An empty list is no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
///
/// Within a list any value may match (OR); across lists every non-empty
/// list must match (AND).
pub struct InsightFilter {
    /// `FromEmailAddress` patterns.
    pub from_email_address: Vec<TextPattern>,
    /// `Destination` patterns.
    pub destination: Vec<TextPattern>,
    /// `Subject` patterns.
    pub subject: Vec<TextPattern>,
    /// `Isp` values, exactly.
    pub isp: Vec<String>,
    /// `TenantName` values, exactly.
    pub tenant_name: Vec<String>,
    /// `LastDeliveryEvent` values.
    pub last_delivery_event: Vec<DeliveryEventType>,
    /// `LastEngagementEvent` values.
    pub last_engagement_event: Vec<EngagementEventType>,
}

/// A filter value that could not be parsed: its path under the filters
/// object (`subject.1.member`), as validation messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Where the value is, under the filters object.
    pub path: String,
    /// What is wrong with it.
    pub error: PatternError,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Value at '{}' failed to satisfy constraint: {}",
            self.path, self.error
        )
    }
}

impl std::error::Error for FilterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl InsightFilter {
    /// Whether the filter looks at a message's text (from address or
    /// subject): a scan that it does not need the text for can leave the
    /// text out of the rows it only judges.
    pub fn reads_text(&self) -> bool {
        !self.from_email_address.is_empty() || !self.subject.is_empty()
    }

    /// The filter without its text parts (from address, subject): as an
    /// `Include` it passes whatever the full filter passes, and as an
    /// `Exclude` it drops only what the full filter drops, so a row judged
    /// by it without its text is ruled out for certain or still open.
    pub fn without_text(&self) -> InsightFilter {
        InsightFilter {
            from_email_address: Vec::new(),
            subject: Vec::new(),
            ..self.clone()
        }
    }

    /// Parses the model's filters; every bad value is reported.
    pub fn parse(filters: &MessageInsightsFilters) -> Result<InsightFilter, Vec<FilterError>> {
        let mut errors = Vec::new();
        let mut text = |name: &str, values: &Option<Vec<String>>| -> Vec<TextPattern> {
            let mut out = Vec::new();
            for (i, value) in values.iter().flatten().enumerate() {
                match TextPattern::parse(value) {
                    Ok(p) => out.push(p),
                    Err(error) => errors.push(FilterError {
                        path: format!("{name}.{}.member", i + 1),
                        error,
                    }),
                }
            }
            out
        };
        let filter = InsightFilter {
            from_email_address: text("fromEmailAddress", &filters.from_email_address),
            destination: text("destination", &filters.destination),
            subject: text("subject", &filters.subject),
            isp: filters.isp.clone().unwrap_or_default(),
            tenant_name: filters.tenant_name.clone().unwrap_or_default(),
            last_delivery_event: filters.last_delivery_event.clone().unwrap_or_default(),
            last_engagement_event: filters.last_engagement_event.clone().unwrap_or_default(),
        };
        if errors.is_empty() { Ok(filter) } else { Err(errors) }
    }

    /// Each non-empty filter's verdict on a record's fields: a record
    /// without the field never matches a filter on it.
    fn verdicts<'a>(&'a self, f: FilterFields<'a>) -> impl Iterator<Item = bool> + 'a {
        fn text(patterns: &[TextPattern], value: Option<&str>) -> Option<bool> {
            (!patterns.is_empty()).then(|| value.is_some_and(|v| patterns.iter().any(|p| p.matches(v))))
        }
        fn exact<T: PartialEq>(values: &[T], value: Option<T>) -> Option<bool> {
            (!values.is_empty()).then(|| value.is_some_and(|v| values.contains(&v)))
        }
        fn exact_text(values: &[String], value: Option<&str>) -> Option<bool> {
            (!values.is_empty()).then(|| value.is_some_and(|v| values.iter().any(|x| x == v)))
        }
        // What a record shows costs a look at its address: only when asked.
        let shown = if self.last_delivery_event.is_empty() && self.last_engagement_event.is_empty() {
            EventFlags::default()
        } else {
            f.flags.shown(shows_every_event(f.recipient_count, f.destination))
        };
        [
            text(&self.from_email_address, f.from_email_address),
            text(&self.destination, Some(f.destination)),
            text(&self.subject, f.subject),
            exact_text(&self.isp, Some(f.isp)),
            exact_text(&self.tenant_name, f.tenant_name),
            exact(&self.last_delivery_event, shown.last_delivery_event()),
            exact(&self.last_engagement_event, shown.last_engagement_event()),
        ]
        .into_iter()
        .flatten()
    }

    /// As an `Include`: every non-empty filter matches (AND); within one,
    /// any value (OR).
    pub fn includes(&self, record: &InsightRecord) -> bool {
        self.includes_fields(record.filter_fields())
    }

    /// As an `Exclude`: any non-empty filter matches.
    pub fn excludes(&self, record: &InsightRecord) -> bool {
        self.excludes_fields(record.filter_fields())
    }

    /// [`includes`](Self::includes) on borrowed fields.
    pub fn includes_fields(&self, fields: FilterFields<'_>) -> bool {
        self.verdicts(fields).all(|v| v)
    }

    /// [`excludes`](Self::excludes) on borrowed fields.
    pub fn excludes_fields(&self, fields: FilterFields<'_>) -> bool {
        self.verdicts(fields).any(|v| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_with_their_escapes() {
        use TextPattern::*;
        let cases: &[(&str, Result<TextPattern, PatternError>)] = &[
            ("abc", Ok(Exact("abc".into()))),
            ("abc*", Ok(Prefix("abc".into()))),
            ("*abc", Ok(Suffix("abc".into()))),
            ("*abc*", Ok(Contains("abc".into()))),
            ("*", Ok(Any)),
            ("**", Ok(Any)),
            ("", Ok(Exact(String::new()))),
            (r"a\*b", Ok(Exact("a*b".into()))),
            (r"\*", Ok(Exact("*".into()))),
            (r"\**", Ok(Prefix("*".into()))),
            (r"*\*", Ok(Suffix("*".into()))),
            (r"a\\b", Ok(Exact(r"a\b".into()))),
            (r"a\\*", Ok(Prefix(r"a\".into()))),
            ("a*b", Err(PatternError::InnerWildcard)),
            ("**a*", Err(PatternError::InnerWildcard)),
            (r"a\b", Err(PatternError::BadEscape)),
            (r"a\", Err(PatternError::BadEscape)),
        ];
        for (text, expected) in cases {
            assert_eq!(&TextPattern::parse(text), expected, "{text:?}");
        }
    }

    #[test]
    fn patterns_match_case_sensitively() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("abc", "ABC", false),
            ("abc", "abcd", false),
            ("news@*", "news@example.com", true),
            ("news@*", "News@example.com", false),
            ("*@example.com", "a@example.com", true),
            ("*@example.com", "a@example.co", false),
            ("*sale*", "Big sale today", true),
            ("*sale*", "Big Sale today", false),
            ("*", "", true),
            (r"50\* off", "50* off", true),
            (r"50\* off", "50 off", false),
            (r"\\path", r"\path", true),
        ];
        for (pattern, value, expected) in cases {
            let p = TextPattern::parse(pattern).expect(pattern);
            assert_eq!(p.matches(value), *expected, "{pattern:?} on {value:?}");
        }
    }
}
