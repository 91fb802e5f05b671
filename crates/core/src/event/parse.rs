//! One record (a JSON object) to one [`SesEvent`], with a reason a person
//! can act on when the record is not one.

use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};

use super::{BounceDetail, ComplaintDetail, EventKind, Mail, NamedRecipient, SesEvent};
use crate::clock::{Millis, parse_iso8601};
use ses_export_model::types::BounceType;

/// A record as read: an SES record, or one envelope around one. `D` is
/// what `detail` holds: the outer read takes an SES record there
/// (`RawRecord<IgnoredAny>`), and that inner record's own `detail` is
/// skipped unread, so no input, however deeply it nests envelopes, makes
/// the reader recurse past one level of them (serde_json's own depth limit
/// bounds what is skipped).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord<D = IgnoredAny> {
    event_type: Option<String>,
    notification_type: Option<String>,
    mail: Option<RawMail>,
    send: Option<RawDetail>,
    delivery: Option<RawDetail>,
    bounce: Option<RawDetail>,
    complaint: Option<RawDetail>,
    reject: Option<RawDetail>,
    open: Option<RawDetail>,
    click: Option<RawDetail>,
    failure: Option<RawDetail>,
    delivery_delay: Option<RawDetail>,
    subscription: Option<RawDetail>,
    /// An SNS notification carries the record as text in `Message`.
    #[serde(rename = "Message")]
    sns_message: Option<String>,
    /// An EventBridge event carries the record in `detail`, from the
    /// `source` `aws.ses`.
    detail: Option<D>,
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMail {
    timestamp: Option<String>,
    message_id: Option<String>,
    source: Option<String>,
    source_arn: Option<String>,
    #[serde(default)]
    destination: Vec<String>,
    common_headers: Option<RawCommonHeaders>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct RawCommonHeaders {
    #[serde(default)]
    from: Vec<String>,
    subject: Option<String>,
}

/// The parts of any event object that matter here; the rest only feeds the
/// event's identity.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawDetail {
    timestamp: Option<String>,
    recipients: Option<Vec<String>>,
    bounced_recipients: Option<Vec<RawRecipient>>,
    complained_recipients: Option<Vec<RawRecipient>>,
    delayed_recipients: Option<Vec<RawRecipient>>,
    bounce_type: Option<String>,
    bounce_sub_type: Option<String>,
    complaint_sub_type: Option<String>,
    complaint_feedback_type: Option<String>,
    feedback_id: Option<String>,
    link: Option<String>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    reason: Option<String>,
    error_message: Option<String>,
    template_name: Option<String>,
    delay_type: Option<String>,
    contact_list: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecipient {
    email_address: Option<String>,
    diagnostic_code: Option<String>,
}

/// The most recipients a message may list: SES's own limit per message.
pub const MAX_RECIPIENTS: usize = 50;
/// The most bytes of message-level text (source, from, subject, tags) a
/// record may carry: SES truncates headers at 10 KiB.
pub const MAX_TEXT_BYTES: usize = 10 * 1024;

/// Refuses a record whose cost in the store would not follow its size
/// (docs/security.md): too many recipients, or too much message-level text.
fn check_bounds(mail: &Mail, named: usize) -> Result<(), String> {
    let listed = mail.destination.len().max(named);
    if listed > MAX_RECIPIENTS {
        return Err(format!(
            "the message lists {listed} recipients; SES sends a message to at most {MAX_RECIPIENTS}"
        ));
    }
    let text = [&mail.source, &mail.source_arn, &mail.from, &mail.subject]
        .iter()
        .map(|t| t.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + mail
            .tags
            .iter()
            .map(|(name, values)| name.len() + values.iter().map(String::len).sum::<usize>())
            .sum::<usize>();
    if text > MAX_TEXT_BYTES {
        return Err(format!(
            "the message's text (source, from, subject, tags) is {text} bytes; at most {MAX_TEXT_BYTES} are accepted"
        ));
    }
    Ok(())
}

/// Parses one record: an SES event-publishing record, an SES notification
/// (`notificationType`), or either in an SNS notification's `Message` or an
/// EventBridge event's `detail`.
///
/// One envelope is unwrapped, never more: an SNS `Message` or an
/// EventBridge `detail` that is itself an envelope is not an SES record.
pub fn parse_record(text: &str) -> Result<SesEvent, RecordError> {
    parse(text).map_err(RecordError)
}

/// Why a line is not an SES record we keep, in the words an ingest report
/// gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(String);

impl RecordError {
    /// The reason, for a report.
    pub fn into_reason(self) -> String {
        self.0
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecordError {}

fn parse(text: &str) -> Result<SesEvent, String> {
    let raw: RawRecord<RawRecord> = raw_record(text)?;
    if raw.event_type.is_some() || raw.notification_type.is_some() {
        return event(raw);
    }
    if let Some(inner) = &raw.sns_message {
        let raw: RawRecord = raw_record(inner).map_err(|e| format!("SNS notification whose Message is {e}"))?;
        return event(raw);
    }
    if let Some(detail) = raw.detail {
        return match raw.source.as_deref() {
            Some("aws.ses") => event(detail).map_err(|e| format!("EventBridge event whose detail is {e}")),
            other => Err(format!(
                "an EventBridge event from source {}, not aws.ses",
                other.map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}"))
            )),
        };
    }
    event(raw)
}

fn raw_record<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, String> {
    if !text.trim_start().starts_with('{') {
        return Err("not a JSON object".to_owned());
    }
    serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            format!("not an SES event record: {e}")
        } else {
            format!("not valid JSON: {e}")
        }
    })
}

fn event<D>(raw: RawRecord<D>) -> Result<SesEvent, String> {
    let type_name = raw
        .event_type
        .as_deref()
        .or(raw.notification_type.as_deref())
        .ok_or("not an SES event record: no eventType")?;
    let kind = EventKind::from_ses_name(type_name).ok_or_else(|| format!("unknown eventType {type_name:?}"))?;
    let raw_mail = raw.mail.ok_or("no mail object")?;
    let mail = mail(raw_mail)?;

    let detail = match kind {
        EventKind::Send => raw.send,
        EventKind::Delivery => raw.delivery,
        EventKind::Bounce => raw.bounce,
        EventKind::Complaint => raw.complaint,
        EventKind::Reject => raw.reject,
        EventKind::Open => raw.open,
        EventKind::Click => raw.click,
        EventKind::RenderingFailure => raw.failure,
        EventKind::DeliveryDelay => raw.delivery_delay,
        EventKind::Subscription => raw.subscription,
    };
    let object = match kind {
        EventKind::RenderingFailure => "failure",
        EventKind::DeliveryDelay => "deliveryDelay",
        _ => "",
    };
    let detail = match (detail, kind) {
        (Some(detail), _) => detail,
        // SES sends `"send": {}`, but a record without it is still a Send.
        (None, EventKind::Send | EventKind::Reject | EventKind::RenderingFailure) => RawDetail::default(),
        (None, _) => {
            let object = if object.is_empty() {
                lower_first(kind.ses_name())
            } else {
                object.to_owned()
            };
            return Err(format!("{} event without its {object} object", kind.ses_name()));
        }
    };

    let timestamp = match &detail.timestamp {
        Some(text) => {
            parse_iso8601(text).ok_or_else(|| format!("{} timestamp {text:?} is not ISO 8601", kind.ses_name()))?
        }
        None => mail.timestamp,
    };
    let named = |list: &Option<Vec<RawRecipient>>, field: &str| -> Result<Vec<NamedRecipient>, String> {
        list.iter()
            .flatten()
            .map(|r| {
                Ok(NamedRecipient {
                    address: r
                        .email_address
                        .clone()
                        .ok_or_else(|| format!("a {field} entry without emailAddress"))?,
                    diagnostic_code: r.diagnostic_code.clone(),
                })
            })
            .collect()
    };
    let recipients = match kind {
        EventKind::Delivery => detail
            .recipients
            .iter()
            .flatten()
            .map(|a| NamedRecipient {
                address: a.clone(),
                diagnostic_code: None,
            })
            .collect(),
        EventKind::Bounce => named(&detail.bounced_recipients, "bouncedRecipients")?,
        EventKind::Complaint => named(&detail.complained_recipients, "complainedRecipients")?,
        EventKind::DeliveryDelay => named(&detail.delayed_recipients, "delayedRecipients")?,
        _ => Vec::new(),
    };
    if recipients.is_empty() && mail.destination.is_empty() {
        return Err("the event names no recipient and mail.destination is empty".to_owned());
    }
    check_bounds(&mail, recipients.len())?;

    let bounce = match kind {
        EventKind::Bounce => Some(BounceDetail {
            bounce_type: match detail.bounce_type.as_deref() {
                Some("Permanent") => BounceType::Permanent,
                Some("Transient") => BounceType::Transient,
                Some("Undetermined") | None => BounceType::Undetermined,
                Some(other) => {
                    return Err(format!(
                        "bounce.bounceType {other:?} is not Permanent, Transient or Undetermined"
                    ));
                }
            },
            bounce_sub_type: detail.bounce_sub_type.clone(),
        }),
        _ => None,
    };
    let complaint = match kind {
        EventKind::Complaint => Some(ComplaintDetail {
            complaint_sub_type: detail.complaint_sub_type.clone(),
            complaint_feedback_type: detail.complaint_feedback_type.clone(),
        }),
        _ => None,
    };

    let id = event_id(kind, timestamp, &mail, &recipients, &detail);
    let event = SesEvent {
        id,
        kind,
        timestamp,
        mail,
        recipients,
        bounce,
        complaint,
    };
    check_storable(&event)?;
    Ok(event)
}

/// The earliest time an event may carry: 2011-01-01, before SES sent its
/// first message. Earlier is not a real SES event.
pub const EARLIEST_EVENT_MILLIS: Millis = Millis(1_293_840_000_000);
/// How far past this server's clock an event's time may be: a day, room
/// for any clock. Later is not a real SES event, and retention would
/// never expire it.
pub const MAX_EVENT_LEAD_MILLIS: i64 = 24 * 3600 * 1000;

/// Refuses what a store could not keep as it is, or would keep wrongly:
/// a time before SES existed or more than [`MAX_EVENT_LEAD_MILLIS`] ahead
/// of now, and text holding U+0000 (PostgreSQL's text cannot, and an id
/// with it could never be asked for).
fn check_storable(event: &SesEvent) -> Result<(), String> {
    let now = crate::clock::now();
    for (what, at) in [
        ("mail.timestamp", event.mail.timestamp),
        ("the event's timestamp", event.timestamp),
    ] {
        if at < EARLIEST_EVENT_MILLIS {
            return Err(format!("{what} is before 2011-01-01, earlier than any SES event"));
        }
        if at > now + MAX_EVENT_LEAD_MILLIS {
            return Err(format!("{what} is more than a day ahead of this server's clock"));
        }
    }
    let mail = &event.mail;
    let texts = [
        Some(&mail.message_id),
        mail.source.as_ref(),
        mail.source_arn.as_ref(),
        mail.from.as_ref(),
        mail.subject.as_ref(),
    ]
    .into_iter()
    .flatten()
    .chain(&mail.destination)
    .chain(
        mail.tags
            .iter()
            .flat_map(|(name, values)| std::iter::once(name).chain(values)),
    )
    .chain(
        event
            .recipients
            .iter()
            .flat_map(|r| std::iter::once(&r.address).chain(&r.diagnostic_code)),
    )
    .chain(event.bounce.iter().flat_map(|b| &b.bounce_sub_type))
    .chain(
        event
            .complaint
            .iter()
            .flat_map(|c| c.complaint_sub_type.iter().chain(&c.complaint_feedback_type)),
    );
    for text in texts {
        if text.contains('\0') {
            return Err("the record's text holds a NUL character (\\u0000), which cannot be stored".to_owned());
        }
    }
    Ok(())
}

fn mail(raw: RawMail) -> Result<Mail, String> {
    let message_id = raw.message_id.filter(|m| !m.is_empty()).ok_or("no mail.messageId")?;
    let text = raw.timestamp.ok_or("no mail.timestamp")?;
    let timestamp = parse_iso8601(&text).ok_or_else(|| format!("mail.timestamp {text:?} is not ISO 8601"))?;
    let (from, subject) = match raw.common_headers {
        Some(headers) => (headers.from.into_iter().next(), headers.subject),
        None => (None, None),
    };
    Ok(Mail {
        message_id,
        timestamp,
        source: raw.source,
        source_arn: raw.source_arn,
        from,
        subject,
        destination: raw.destination,
        tags: raw.tags.into_iter().collect(),
    })
}

/// The identity of an event: its message, type, time, recipients and every
/// detail that tells two events of one type apart (a click's link, an
/// open's user agent, a bounce's feedback id). The wrapper it came in, the
/// field order and the whitespace do not count.
fn event_id(
    kind: EventKind,
    timestamp: Millis,
    mail: &Mail,
    recipients: &[NamedRecipient],
    detail: &RawDetail,
) -> [u8; 16] {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(mail.message_id.as_bytes());
    field(&[kind.code()]);
    field(&timestamp.0.to_le_bytes());
    for r in recipients {
        field(r.address.as_bytes());
    }
    for text in [
        &detail.feedback_id,
        &detail.link,
        &detail.ip_address,
        &detail.user_agent,
        &detail.reason,
        &detail.error_message,
        &detail.template_name,
        &detail.delay_type,
        &detail.contact_list,
        &detail.bounce_type,
        &detail.complaint_feedback_type,
    ] {
        field(text.as_deref().unwrap_or("\u{0}").as_bytes());
    }
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
