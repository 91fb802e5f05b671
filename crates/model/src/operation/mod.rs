//! Per-operation metadata: HTTP method, URI template, labels, the shapes in
//! and out, and the errors the operation may answer with.

mod generated;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorCode;
use crate::schema::{Shape, Shaped};

pub use generated::*;

/// What the model says of one operation.
#[derive(Debug)]
pub struct OperationSpec {
    /// `CreateExportJob`.
    pub name: &'static str,
    /// `POST`.
    pub method: &'static str,
    /// The URI template, `/v2/email/export-jobs/{JobId}`.
    pub uri: &'static str,
    /// The labels of `uri`, in order.
    pub labels: &'static [&'static str],
    /// The input structure's shape.
    pub input: &'static Shape,
    /// The output structure's shape.
    pub output: &'static Shape,
    /// The modeled errors, in the model's order.
    pub errors: &'static [ErrorCode],
    /// The HTTP status of a success.
    pub success_status: u16,
}

impl OperationSpec {
    /// The request path with `labels` filled in, each percent-encoded as one
    /// path segment (every byte but RFC 3986's unreserved ones).
    ///
    /// A label missing from `labels` is left as its template text.
    pub fn path(&self, labels: &[(&str, &str)]) -> String {
        let mut path = self.uri.to_owned();
        for (name, value) in labels {
            path = path.replace(&format!("{{{name}}}"), &percent_encode(value));
        }
        path
    }
}

/// One operation as a type, binding its input and output types.
pub trait Operation {
    /// The request type.
    type Input: Shaped + Serialize + DeserializeOwned;
    /// The response type.
    type Output: Shaped + Serialize + DeserializeOwned;

    /// The operation's metadata.
    fn spec() -> &'static OperationSpec;

    /// The input's members bound to URI labels, as (label, value).
    fn labels(input: &Self::Input) -> Vec<(&'static str, &str)>;
}

/// RFC 3986 percent-encoding of every byte but the unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`): how labels go into paths, and how SigV4 encodes
/// canonical paths and queries.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// [`percent_encode`]'s inverse: `%XX` escapes decoded, anything
/// malformed kept as it is, bytes that are not UTF-8 replaced.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_undoes_encoding_and_keeps_what_is_malformed() {
        for text in ["a b/c~", "0100-é", "%", "100%"] {
            assert_eq!(percent_decode(&percent_encode(text)), text);
        }
        let cases = [
            ("%41%2f", "A/"),
            ("%", "%"),
            ("%4", "%4"),
            ("%zz1", "%zz1"),
            ("a%2", "a%2"),
            ("%C3%A9", "é"),
        ];
        for (encoded, decoded) in cases {
            assert_eq!(percent_decode(encoded), decoded, "{encoded}");
        }
    }

    #[test]
    fn labels_are_encoded_as_one_segment() {
        let path = GET_EXPORT_JOB.path(&[("JobId", "a b/c~")]);
        assert_eq!(path, "/v2/email/export-jobs/a%20b%2Fc~");
        let path = GET_MESSAGE_INSIGHTS.path(&[("MessageId", "0100-é")]);
        assert_eq!(path, "/v2/email/insights/0100-%C3%A9/");
    }
}
