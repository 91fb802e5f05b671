//! SES event-publishing records: what SES sends to Firehose, SNS or
//! EventBridge for every email event, parsed into [`SesEvent`]s.

mod parse;
mod reader;

pub use parse::{EARLIEST_EVENT_MILLIS, MAX_EVENT_LEAD_MILLIS, RecordError, parse_record};
pub use reader::{
    EventReader, Line, LineError, MAX_LINE_BYTES, MAX_REASON_BYTES, ParsedLine, bounded_reason, gzip_reader,
    line_too_long, open_events, read_line,
};

use crate::clock::Millis;
use ses_export_model::types::{BounceType, EventType};

/// One SES event, as parsed from one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesEvent {
    /// Stable identity: the same event parsed twice, from any wrapper, has
    /// the same id. Ingestion counts each id once.
    pub id: EventId,
    /// Which of the ten event types this is.
    pub kind: EventKind,
    /// The event's own time; `mail.timestamp` for events without one.
    pub timestamp: Millis,
    /// The `mail` object: the message the event is about.
    pub mail: Mail,
    /// The recipients the event names. Empty for events that name none
    /// (Send, Open, Click, Reject, Rendering Failure, Subscription): those
    /// belong to every recipient in `mail.destination`.
    pub recipients: Vec<NamedRecipient>,
    /// For a Bounce.
    pub bounce: Option<BounceDetail>,
    /// For a Complaint.
    pub complaint: Option<ComplaintDetail>,
}

impl SesEvent {
    /// The recipients the event belongs to.
    pub fn belongs_to(&self) -> Vec<(&str, Option<&str>)> {
        if self.recipients.is_empty() {
            self.mail.destination.iter().map(|d| (d.as_str(), None)).collect()
        } else {
            self.recipients
                .iter()
                .map(|r| (r.address.as_str(), r.diagnostic_code.as_deref()))
                .collect()
        }
    }
}

/// 128 bits that name one event.
pub type EventId = [u8; 16];

/// The ten event types SES publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// SES accepted the message and will try to deliver it.
    Send,
    /// The receiving server accepted the message.
    Delivery,
    /// The receiving server rejected the message, or it could not be sent.
    Bounce,
    /// The recipient marked the message as spam.
    Complaint,
    /// SES refused the message (it carried a virus).
    Reject,
    /// The recipient opened the message.
    Open,
    /// The recipient clicked a link in the message.
    Click,
    /// A template could not be rendered.
    RenderingFailure,
    /// Delivery is delayed; SES keeps trying.
    DeliveryDelay,
    /// The recipient changed their subscription preferences.
    Subscription,
}

impl EventKind {
    /// Every kind, in a fixed order (the order of their stored codes).
    pub const ALL: [EventKind; 10] = [
        EventKind::Send,
        EventKind::Delivery,
        EventKind::Bounce,
        EventKind::Complaint,
        EventKind::Reject,
        EventKind::Open,
        EventKind::Click,
        EventKind::RenderingFailure,
        EventKind::DeliveryDelay,
        EventKind::Subscription,
    ];

    /// The `eventType` text SES writes.
    pub fn ses_name(self) -> &'static str {
        match self {
            EventKind::Send => "Send",
            EventKind::Delivery => "Delivery",
            EventKind::Bounce => "Bounce",
            EventKind::Complaint => "Complaint",
            EventKind::Reject => "Reject",
            EventKind::Open => "Open",
            EventKind::Click => "Click",
            EventKind::RenderingFailure => "Rendering Failure",
            EventKind::DeliveryDelay => "DeliveryDelay",
            EventKind::Subscription => "Subscription",
        }
    }

    /// The kind named by an `eventType` (or `notificationType`) text.
    pub fn from_ses_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.ses_name() == name)
    }

    /// A small integer for storage; the index in [`EventKind::ALL`].
    pub fn code(self) -> u8 {
        EventKind::ALL.iter().position(|k| *k == self).unwrap_or(0) as u8
    }

    /// The kind stored as `code`.
    pub fn from_code(code: u8) -> Option<EventKind> {
        EventKind::ALL.get(usize::from(code)).copied()
    }

    /// The model's name for the kind, as `GetMessageInsights` reports it.
    pub fn event_type(self) -> EventType {
        match self {
            EventKind::Send => EventType::Send,
            EventKind::Delivery => EventType::Delivery,
            EventKind::Bounce => EventType::Bounce,
            EventKind::Complaint => EventType::Complaint,
            EventKind::Reject => EventType::Reject,
            EventKind::Open => EventType::Open,
            EventKind::Click => EventType::Click,
            EventKind::RenderingFailure => EventType::RenderingFailure,
            EventKind::DeliveryDelay => EventType::DeliveryDelay,
            EventKind::Subscription => EventType::Subscription,
        }
    }
}

/// What every record says of the message it is about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mail {
    /// `mail.messageId`, SES's id for the message.
    pub message_id: String,
    /// `mail.timestamp`: when the message was sent.
    pub timestamp: Millis,
    /// `mail.source`, the envelope sender.
    pub source: Option<String>,
    /// `mail.sourceArn`, the identity used to send.
    pub source_arn: Option<String>,
    /// `mail.commonHeaders.from[0]`.
    pub from: Option<String>,
    /// `mail.commonHeaders.subject`.
    pub subject: Option<String>,
    /// `mail.destination`: every recipient.
    pub destination: Vec<String>,
    /// `mail.tags`, in name order, each with all its values.
    pub tags: Vec<(String, Vec<String>)>,
}

impl Mail {
    /// The first value of tag `name`.
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }
}

/// A recipient an event names, with the per-recipient diagnostic code that
/// bounces and delays carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRecipient {
    /// The recipient's address, as the event gives it.
    pub address: String,
    /// The receiving server's answer (`diagnosticCode`), when there is one.
    pub diagnostic_code: Option<String>,
}

/// A Bounce's type and subtype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceDetail {
    /// `bounce.bounceType`: permanent, transient or undetermined.
    pub bounce_type: BounceType,
    /// `bounce.bounceSubType` (`General`, `NoEmail`, `Suppressed`, ...).
    pub bounce_sub_type: Option<String>,
}

/// A Complaint's subtype and feedback type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplaintDetail {
    /// `complaint.complaintSubType` (`OnAccountSuppressionList` or none).
    pub complaint_sub_type: Option<String>,
    /// `complaint.complaintFeedbackType` (`abuse`, `fraud`, ...), from the
    /// feedback report when the ISP sent one.
    pub complaint_feedback_type: Option<String>,
}
