//! Insight records: one per message and recipient, with the fields docs/metrics.md
//! derives from the events (ISP, identity, configuration set, tenant, the
//! last delivery and engagement events).

use ses_export_model::types::{DeliveryEventType, EngagementEventType};

use crate::clock::Millis;
use crate::event::Mail;
pub use crate::flags::{EventFlags, ON_ACCOUNT_SUPPRESSION_LIST};
use crate::vdm::DimensionValues;

/// The ISP of `recipient`: the `ses:recipient-isp` tag if the message has
/// one, else by the recipient's domain (whole, case-insensitive), else
/// `UNKNOWN_ISP`.
pub fn isp_for(mail: &Mail, recipient: &str) -> String {
    if let Some(tag) = mail.tag("ses:recipient-isp") {
        return tag.to_owned();
    }
    isp_by_domain(domain_of(recipient).unwrap_or("")).to_owned()
}

/// The documented domain table; `UNKNOWN_ISP` for any other domain.
pub fn isp_by_domain(domain: &str) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        ("gmail.com", "Gmail"),
        ("googlemail.com", "Gmail"),
        ("yahoo.com", "Yahoo"),
        ("ymail.com", "Yahoo"),
        ("rocketmail.com", "Yahoo"),
        ("outlook.com", "Hotmail"),
        ("hotmail.com", "Hotmail"),
        ("live.com", "Hotmail"),
        ("msn.com", "Hotmail"),
        ("aol.com", "AOL"),
        ("icloud.com", "Apple"),
        ("me.com", "Apple"),
        ("mac.com", "Apple"),
        ("comcast.net", "Comcast"),
        ("orange.fr", "Orange"),
        ("wanadoo.fr", "Orange"),
        ("gmx.de", "GMX"),
        ("gmx.net", "GMX"),
        ("web.de", "WEB.DE"),
        ("yandex.ru", "Yandex"),
        ("mail.ru", "Mail.Ru"),
        ("qq.com", "QQ"),
    ];
    TABLE
        .iter()
        .find(|(d, _)| d.eq_ignore_ascii_case(domain))
        .map_or("UNKNOWN_ISP", |(_, isp)| isp)
}

/// The domain of an address, `Name <a@b.com>` forms included.
fn domain_of(address: &str) -> Option<&str> {
    let address = match (address.rfind('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => &address[open + 1..close],
        _ => address,
    };
    address.rsplit_once('@').map(|(_, domain)| domain.trim())
}

/// The sending identity: the one in `mail.sourceArn`
/// (`arn:aws:ses:...:identity/example.com`), else the domain of
/// `mail.source`.
pub fn email_identity(mail: &Mail) -> Option<String> {
    if let Some(arn) = &mail.source_arn
        && let Some((_, identity)) = arn.split_once(":identity/")
        && !identity.is_empty()
    {
        return Some(identity.to_owned());
    }
    mail.source.as_deref().and_then(domain_of).map(str::to_owned)
}

/// The mailbox simulator's domain.
const SIMULATOR_DOMAIN: &str = "simulator.amazonses.com";

/// Whether `address` is at the mailbox simulator (any case).
/// The seed-free hash that places a record (its message id and
/// destination) in every export's sample: an export's seed is mixed in
/// after, so a store may keep this per row.
pub fn sample_hash(message_id: &str, destination: &str) -> u64 {
    crate::rng::key_hash(&[message_id.as_bytes(), destination.as_bytes()])
}

/// Whether `address` is at the mailbox simulator.
pub fn is_simulator(address: &str) -> bool {
    domain_of(address).is_some_and(|d| d.eq_ignore_ascii_case(SIMULATOR_DOMAIN))
}

/// Whether a record shows every event and counts toward metrics: its
/// message had one recipient, not at the mailbox simulator. AWS's metrics
/// and insight event types leave out the others' delivery and engagement.
pub fn shows_every_event(recipient_count: u32, destination: &str) -> bool {
    recipient_count == 1 && !is_simulator(destination)
}

/// One message and recipient, as exports and filters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightRecord {
    /// SES's message id.
    pub message_id: String,
    /// `mail.timestamp`.
    pub send_timestamp: Millis,
    /// The recipient's address.
    pub destination: String,
    /// The first From address (`mail.source` when there is none).
    pub from_email_address: Option<String>,
    /// `mail.commonHeaders.subject` (kept once per message, not per record).
    pub subject: Option<String>,
    /// The recipient's mailbox provider, from its domain.
    pub isp: String,
    /// The identity the message was sent from: `mail.sourceArn`'s, else
    /// the domain of `mail.source`.
    pub email_identity: Option<String>,
    /// The `ses:configuration-set` tag.
    pub configuration_set: Option<String>,
    /// The `ses:tenant-name` tag.
    pub tenant_name: Option<String>,
    /// How many recipients the message had (`mail.destination`); metrics
    /// count single-recipient messages only.
    pub recipient_count: u32,
    /// The events seen for this message and recipient.
    pub flags: EventFlags,
}

impl InsightRecord {
    /// A record for `destination` of `mail`, with no events yet.
    pub fn new(mail: &Mail, destination: &str) -> Self {
        InsightRecord {
            message_id: mail.message_id.clone(),
            send_timestamp: mail.timestamp,
            destination: destination.to_owned(),
            from_email_address: mail.from.clone().or_else(|| mail.source.clone()),
            subject: mail.subject.clone(),
            isp: isp_for(mail, destination),
            email_identity: email_identity(mail),
            configuration_set: mail.tag("ses:configuration-set").map(str::to_owned),
            tenant_name: mail.tag("ses:tenant-name").map(str::to_owned),
            recipient_count: u32::try_from(mail.destination.len().max(1)).unwrap_or(u32::MAX),
            flags: EventFlags::default(),
        }
    }

    /// The record's place in exports: send time, message id, destination,
    /// text by byte value.
    pub fn sort_key(&self) -> (Millis, &str, &str) {
        (self.send_timestamp, &self.message_id, &self.destination)
    }

    /// The flags the record shows (docs/metrics.md, "Which events a record shows").
    pub fn shown_flags(&self) -> EventFlags {
        self.flags
            .shown(shows_every_event(self.recipient_count, &self.destination))
    }

    /// `LastDeliveryEvent`: the latest delivery stage the record shows.
    pub fn last_delivery_event(&self) -> Option<DeliveryEventType> {
        self.shown_flags().last_delivery_event()
    }

    /// `LastEngagementEvent`: the latest engagement the record shows.
    pub fn last_engagement_event(&self) -> Option<EngagementEventType> {
        self.shown_flags().last_engagement_event()
    }

    /// Whether the record counts toward VDM metrics at all: a
    /// single-recipient message to a recipient not at the mailbox simulator.
    pub fn counts_toward_metrics(&self) -> bool {
        shows_every_event(self.recipient_count, &self.destination)
    }

    /// The metric dimensions' values, empty where the record has none.
    pub fn dimensions(&self) -> DimensionValues {
        DimensionValues {
            email_identity: self.email_identity.clone().unwrap_or_default(),
            configuration_set: self.configuration_set.clone().unwrap_or_default(),
            isp: self.isp.clone(),
            tenant_name: self.tenant_name.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isp_by_domain_matches_whole_domains_case_insensitively() {
        let cases = [
            ("a@gmail.com", "Gmail"),
            ("a@GMAIL.COM", "Gmail"),
            ("a@mail.gmail.com", "UNKNOWN_ISP"),
            ("a@googlemail.com", "Gmail"),
            ("a@ymail.com", "Yahoo"),
            ("a@rocketmail.com", "Yahoo"),
            ("a@live.com", "Hotmail"),
            ("a@msn.com", "Hotmail"),
            ("a@aol.com", "AOL"),
            ("a@mac.com", "Apple"),
            ("a@comcast.net", "Comcast"),
            ("a@wanadoo.fr", "Orange"),
            ("a@gmx.net", "GMX"),
            ("a@web.de", "WEB.DE"),
            ("a@yandex.ru", "Yandex"),
            ("a@mail.ru", "Mail.Ru"),
            ("a@qq.com", "QQ"),
            ("Someone <a@Hotmail.com>", "Hotmail"),
            ("no-at-sign", "UNKNOWN_ISP"),
        ];
        for (address, isp) in cases {
            assert_eq!(isp_for(&Mail::default(), address), isp, "{address}");
        }
        let tagged = Mail {
            tags: vec![("ses:recipient-isp".into(), vec!["Custom".into(), "Second".into()])],
            ..Mail::default()
        };
        assert_eq!(isp_for(&tagged, "a@gmail.com"), "Custom");
    }

    #[test]
    fn identity_from_arn_else_source_domain() {
        let mut mail = Mail {
            source: Some("Sender <bounce@mail.example.com>".into()),
            ..Mail::default()
        };
        assert_eq!(email_identity(&mail).as_deref(), Some("mail.example.com"));
        mail.source_arn = Some("arn:aws:ses:us-east-1:111111111111:identity/example.com".into());
        assert_eq!(email_identity(&mail).as_deref(), Some("example.com"));
    }

    #[test]
    fn last_events_follow_the_documented_precedence() {
        use DeliveryEventType as D;
        let f = |flags: &[EventFlags]| flags.iter().fold(EventFlags::default(), |a, b| a.union(*b));
        let cases: &[(&[EventFlags], Option<D>)] = &[
            (&[], None),
            (&[EventFlags::REJECT], None),
            (&[EventFlags::SEND], Some(D::Send)),
            (&[EventFlags::OPEN], Some(D::Send)),
            (
                &[EventFlags::SEND, EventFlags::TRANSIENT_BOUNCE],
                Some(D::TransientBounce),
            ),
            (&[EventFlags::UNDETERMINED_BOUNCE], Some(D::UndeterminedBounce)),
            (
                &[EventFlags::TRANSIENT_BOUNCE, EventFlags::PERMANENT_BOUNCE],
                Some(D::PermanentBounce),
            ),
            (&[EventFlags::PERMANENT_BOUNCE, EventFlags::DELIVERY], Some(D::Delivery)),
            (
                &[EventFlags::COMPLAINT, EventFlags::DELIVERY, EventFlags::SEND],
                Some(D::Complaint),
            ),
        ];
        for (flags, expected) in cases {
            assert_eq!(f(flags).last_delivery_event(), *expected, "{flags:?}");
        }
        assert_eq!(
            f(&[EventFlags::OPEN]).last_engagement_event(),
            Some(EngagementEventType::Open)
        );
        assert_eq!(
            f(&[EventFlags::CLICK, EventFlags::OPEN]).last_engagement_event(),
            Some(EngagementEventType::Click)
        );
        assert_eq!(f(&[EventFlags::DELIVERY]).last_engagement_event(), None);
    }
}
