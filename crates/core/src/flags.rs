//! `EventFlags`: which kinds of event a message-and-recipient record has
//! seen, as bits, and what the record shows of them. Records, filters and
//! metrics all read these; the flags know nothing of either.

use std::fmt;

use ses_export_model::types::{BounceType, DeliveryEventType, EngagementEventType};

use crate::event::EventKind;

/// The `bounceSubType` and `complaintSubType` of what the account-level
/// suppression list stopped.
pub const ON_ACCOUNT_SUPPRESSION_LIST: &str = "OnAccountSuppressionList";

/// Which kinds of event a record has seen, as bits. Ingestion only ever
/// adds bits, so the order events arrive in cannot change the result.
///
/// The `u16` is what the stores keep: a bit's position never changes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EventFlags(pub u16);

impl EventFlags {
    /// A Send event.
    pub const SEND: EventFlags = EventFlags(1 << 0);
    /// A Delivery event.
    pub const DELIVERY: EventFlags = EventFlags(1 << 1);
    /// A Permanent bounce (not from the suppression list).
    pub const PERMANENT_BOUNCE: EventFlags = EventFlags(1 << 2);
    /// A Transient bounce.
    pub const TRANSIENT_BOUNCE: EventFlags = EventFlags(1 << 3);
    /// An Undetermined bounce (or one without a type).
    pub const UNDETERMINED_BOUNCE: EventFlags = EventFlags(1 << 4);
    /// A Complaint (not from the suppression list).
    pub const COMPLAINT: EventFlags = EventFlags(1 << 5);
    /// An Open event.
    pub const OPEN: EventFlags = EventFlags(1 << 6);
    /// A Click event.
    pub const CLICK: EventFlags = EventFlags(1 << 7);
    /// A DeliveryDelay event.
    pub const DELIVERY_DELAY: EventFlags = EventFlags(1 << 8);
    /// A Reject event.
    pub const REJECT: EventFlags = EventFlags(1 << 9);
    /// A Rendering Failure event.
    pub const RENDERING_FAILURE: EventFlags = EventFlags(1 << 10);
    /// A Subscription event.
    pub const SUBSCRIPTION: EventFlags = EventFlags(1 << 11);
    /// A Permanent bounce with `bounceSubType` `OnAccountSuppressionList`:
    /// SES did not try to send, so it is no PERMANENT_BOUNCE.
    pub const SUPPRESSED_BOUNCE: EventFlags = EventFlags(1 << 12);
    /// A complaint with `complaintSubType` `OnAccountSuppressionList`: no
    /// COMPLAINT anywhere.
    pub const SUPPRESSED_COMPLAINT: EventFlags = EventFlags(1 << 13);

    /// What a record of a multi-recipient message, or of a recipient at the
    /// mailbox simulator, shows (AWS's `DeliveryEventType`,
    /// `EngagementEventType` and `InsightsEvent.Type` exclude the rest).
    const ALWAYS_SHOWN: EventFlags = EventFlags(
        Self::SEND.0 | Self::REJECT.0 | Self::RENDERING_FAILURE.0 | Self::DELIVERY_DELAY.0 | Self::SUBSCRIPTION.0,
    );

    /// Events that show a message was sent even when its Send record is lost.
    const SENT: EventFlags = EventFlags(
        Self::SEND.0
            | Self::DELIVERY.0
            | Self::PERMANENT_BOUNCE.0
            | Self::TRANSIENT_BOUNCE.0
            | Self::UNDETERMINED_BOUNCE.0
            | Self::COMPLAINT.0
            | Self::OPEN.0
            | Self::CLICK.0
            | Self::DELIVERY_DELAY.0
            | Self::SUPPRESSED_BOUNCE.0
            | Self::SUPPRESSED_COMPLAINT.0,
    );

    /// The bit for one event: its kind, a bounce's type, and whether it
    /// came from the account-level suppression list (`sub_type`, the
    /// bounce's or the complaint's).
    pub fn of(kind: EventKind, bounce_type: Option<&BounceType>, sub_type: Option<&str>) -> EventFlags {
        let suppressed = sub_type == Some(ON_ACCOUNT_SUPPRESSION_LIST);
        match kind {
            EventKind::Send => Self::SEND,
            EventKind::Delivery => Self::DELIVERY,
            EventKind::Bounce => match bounce_type {
                Some(BounceType::Permanent) if suppressed => Self::SUPPRESSED_BOUNCE,
                Some(BounceType::Permanent) => Self::PERMANENT_BOUNCE,
                Some(BounceType::Transient) => Self::TRANSIENT_BOUNCE,
                _ => Self::UNDETERMINED_BOUNCE,
            },
            EventKind::Complaint if suppressed => Self::SUPPRESSED_COMPLAINT,
            EventKind::Complaint => Self::COMPLAINT,
            EventKind::Open => Self::OPEN,
            EventKind::Click => Self::CLICK,
            EventKind::DeliveryDelay => Self::DELIVERY_DELAY,
            EventKind::Reject => Self::REJECT,
            EventKind::RenderingFailure => Self::RENDERING_FAILURE,
            EventKind::Subscription => Self::SUBSCRIPTION,
        }
    }

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: EventFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits of both.
    pub fn union(self, other: EventFlags) -> EventFlags {
        EventFlags(self.0 | other.0)
    }

    /// Whether the message counts as sent: a Send, or any event that only
    /// follows a send.
    pub fn sent(self) -> bool {
        self.0 & Self::SENT.0 != 0
    }

    /// The flags a record shows: all of them when `every_event` (a
    /// single-recipient message to a real mailbox), else only the events
    /// AWS lists for every recipient, with SEND kept when the message was
    /// sent.
    pub fn shown(self, every_event: bool) -> EventFlags {
        if every_event {
            return self;
        }
        let mut shown = EventFlags(self.0 & Self::ALWAYS_SHOWN.0);
        if self.sent() {
            shown = shown.union(Self::SEND);
        }
        shown
    }

    /// The highest of SEND < BOUNCE < DELIVERY < COMPLAINT seen; a bounce
    /// reported by its type (permanent over transient over undetermined
    /// when several were seen, so arrival order never matters).
    pub fn last_delivery_event(self) -> Option<DeliveryEventType> {
        let order = [
            (Self::COMPLAINT, DeliveryEventType::Complaint),
            (Self::DELIVERY, DeliveryEventType::Delivery),
            (Self::PERMANENT_BOUNCE, DeliveryEventType::PermanentBounce),
            (Self::TRANSIENT_BOUNCE, DeliveryEventType::TransientBounce),
            (Self::UNDETERMINED_BOUNCE, DeliveryEventType::UndeterminedBounce),
        ];
        order
            .into_iter()
            .find(|(flag, _)| self.contains(*flag))
            .map(|(_, event)| event)
            .or_else(|| self.sent().then_some(DeliveryEventType::Send))
    }

    /// The highest of OPEN < CLICK seen.
    pub fn last_engagement_event(self) -> Option<EngagementEventType> {
        if self.contains(Self::CLICK) {
            Some(EngagementEventType::Click)
        } else if self.contains(Self::OPEN) {
            Some(EngagementEventType::Open)
        } else {
            None
        }
    }
}

impl fmt::Debug for EventFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventFlags({:#06x})", self.0)
    }
}
