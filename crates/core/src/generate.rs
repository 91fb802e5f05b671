//! A synthetic, realistic SES event stream, reproducible from a seed: for
//! tests, demos and benchmarks.
//!
//! Several sending identities, configuration sets and tenants; recipients
//! spread over ISPs by domain, with bounce, complaint, open and click rates
//! that vary by ISP; now and then a multi-recipient message, a lost Send
//! record, a reject or a rendering failure; events spread over the days
//! after each send and written out of order.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::clock::{DAY_MILLIS, Millis, format_iso8601};
use crate::rng::Rng;

/// What to generate: [`GeneratorConfig::new`], then `with_*` for the rest.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GeneratorConfig {
    /// The same seed gives the same stream, byte for byte.
    pub seed: u64,
    /// How many messages (each gives one event or more per recipient).
    pub messages: u64,
    /// When the first message is sent.
    pub start: Millis,
    /// Over how many days the messages are spread.
    pub days: u32,
    /// The account that appears in ARNs.
    pub account_id: String,
    /// How events arrive (see [`Arrival`]).
    pub arrival: Arrival,
}

/// How the stream orders events and names messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Arrival {
    /// As SES publishes them: message ids begin with the send time, and a
    /// message's events are shuffled only among its near neighbours'.
    #[default]
    Live,
    /// As a backfill of many Firehose files delivered in parallel: message
    /// ids are random, and events are shuffled across windows of
    /// [`BACKFILL_WINDOW`] messages (days of mail at a million a month).
    Backfill,
}

/// Messages whose events a backfill shuffles together.
pub const BACKFILL_WINDOW: usize = 100_000;

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 1,
            messages: 1000,
            start: Millis(1_704_067_200_000), // 2024-01-01T00:00:00Z
            days: 7,
            account_id: "000000000000".to_owned(),
            arrival: Arrival::Live,
        }
    }
}

impl GeneratorConfig {
    /// `messages` messages from `seed`, sent from `start` over `days`
    /// days, for account `000000000000`, arriving as SES publishes them.
    pub fn new(seed: u64, messages: u64, start: Millis, days: u32) -> Self {
        GeneratorConfig {
            seed,
            messages,
            start,
            days,
            ..GeneratorConfig::default()
        }
    }

    /// The account that appears in ARNs.
    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = account_id.into();
        self
    }

    /// How events arrive.
    pub fn with_arrival(mut self, arrival: Arrival) -> Self {
        self.arrival = arrival;
        self
    }
}

/// An ISP's share of recipients and how its recipients behave.
struct IspProfile {
    domains: &'static [&'static str],
    share: f64,
    bounce: f64,
    complaint: f64,
    open: f64,
    click: f64,
}

const ISPS: &[IspProfile] = &[
    IspProfile {
        domains: &["gmail.com", "googlemail.com"],
        share: 0.32,
        bounce: 0.010,
        // Gmail has no feedback loop with SES: it sends no complaints.
        complaint: 0.0,
        open: 0.35,
        click: 0.30,
    },
    IspProfile {
        domains: &["yahoo.com", "ymail.com"],
        share: 0.10,
        bounce: 0.020,
        complaint: 0.0030,
        open: 0.25,
        click: 0.25,
    },
    IspProfile {
        domains: &["outlook.com", "hotmail.com", "live.com"],
        share: 0.13,
        bounce: 0.015,
        complaint: 0.0020,
        open: 0.22,
        click: 0.28,
    },
    IspProfile {
        domains: &["aol.com"],
        share: 0.03,
        bounce: 0.030,
        complaint: 0.0040,
        open: 0.18,
        click: 0.20,
    },
    IspProfile {
        domains: &["icloud.com", "me.com"],
        share: 0.07,
        bounce: 0.005,
        complaint: 0.0005,
        open: 0.60,
        click: 0.10,
    },
    IspProfile {
        domains: &["comcast.net"],
        share: 0.02,
        bounce: 0.025,
        complaint: 0.0010,
        open: 0.20,
        click: 0.22,
    },
    IspProfile {
        domains: &["orange.fr", "gmx.de", "web.de"],
        share: 0.05,
        bounce: 0.020,
        complaint: 0.0015,
        open: 0.28,
        click: 0.25,
    },
    IspProfile {
        domains: &["yandex.ru", "mail.ru", "qq.com"],
        share: 0.03,
        bounce: 0.040,
        complaint: 0.0020,
        open: 0.15,
        click: 0.20,
    },
    // Developers send to the mailbox simulator while testing.
    IspProfile {
        domains: &["simulator.amazonses.com"],
        share: 0.01,
        bounce: 0.0,
        complaint: 0.0,
        open: 0.0,
        click: 0.0,
    },
    IspProfile {
        domains: &["example-corp.com", "acme.io", "university.edu", "startup.dev"],
        share: 0.24,
        bounce: 0.035,
        complaint: 0.0010,
        open: 0.20,
        click: 0.25,
    },
];

const IDENTITIES: &[(&str, f64)] = &[
    ("example.com", 0.5),
    ("news.example.com", 0.3),
    ("billing.example.org", 0.2),
];
const SENDERS: &[&str] = &["news", "info", "no-reply", "alerts", "billing"];
const CONFIGURATION_SETS: &[(Option<&str>, f64)] =
    &[(Some("marketing"), 0.45), (Some("transactional"), 0.4), (None, 0.15)];
/// The configuration set that publishes Open and Click events; SES inserts
/// trackers only there, so only its messages are ever opened or clicked.
const TRACKED_SET: &str = "marketing";
const TENANTS: &[(Option<&str>, f64)] = &[
    (Some("tenant-a"), 0.3),
    (Some("tenant-b"), 0.2),
    (Some("tenant-c"), 0.1),
    (None, 0.4),
];
const SUBJECTS: &[&str] = &[
    "Your weekly digest",
    "Welcome to Example",
    "Your invoice is ready",
    "Big sale: 50% off today",
    "Password reset requested",
    "Ihre Bestellung wurde versandt",
    "Nouveautés de la semaine",
];
const BOUNCE_TYPES: &[((&str, &str), f64)] = &[
    (("Permanent", "General"), 0.47),
    // Addresses on the account-level suppression list: SES does not try.
    (("Permanent", "OnAccountSuppressionList"), 0.08),
    (("Permanent", "NoEmail"), 0.15),
    (("Transient", "MailboxFull"), 0.2),
    (("Transient", "General"), 0.05),
    (("Undetermined", "Undetermined"), 0.05),
];
/// Messages whose events are shuffled together before they are written.
const SHUFFLE_WINDOW: usize = 64;

/// Writes the stream as JSON Lines to `out`; returns how many events.
pub fn write_events(config: &GeneratorConfig, out: impl Write) -> io::Result<u64> {
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut count = 0;
    for line in EventGenerator::new(config.clone()) {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// The stream as an iterator of JSON lines.
#[derive(Debug)]
pub struct EventGenerator {
    config: GeneratorConfig,
    rng: Rng,
    next_message: u64,
    pending: Vec<String>,
}

impl EventGenerator {
    /// A generator of the records `config` describes.
    pub fn new(config: GeneratorConfig) -> Self {
        EventGenerator {
            rng: Rng::new(config.seed),
            config,
            next_message: 0,
            pending: Vec::new(),
        }
    }

    fn refill(&mut self) {
        let window = match self.config.arrival {
            Arrival::Live => SHUFFLE_WINDOW,
            Arrival::Backfill => BACKFILL_WINDOW,
        };
        let end = (self.next_message + window as u64).min(self.config.messages);
        for i in self.next_message..end {
            self.message(i);
        }
        self.next_message = end;
        // Fisher-Yates with our own generator, so the order is stable.
        for i in (1..self.pending.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            self.pending.swap(i, j);
        }
    }

    fn message(&mut self, index: u64) {
        let c = &self.config;
        let spread = i64::from(c.days.max(1)) * DAY_MILLIS;
        let slot = spread / (c.messages.max(1) as i64);
        let sent = c.start + slot * index as i64 + self.rng.below(slot.max(1) as u64) as i64;
        let rng = &mut self.rng;
        let identity = *rng.weighted(IDENTITIES);
        let sender = format!("{}@{identity}", rng.pick(SENDERS));
        let recipients = if rng.chance(0.03) { 2 + rng.below(2) } else { 1 };
        let destination: Vec<(String, &IspProfile)> = (0..recipients)
            .map(|_| {
                let isp = pick_isp(rng);
                let domain = rng.pick(isp.domains);
                (format!("user{}@{domain}", rng.below(5_000_000)), isp)
            })
            .collect();
        let mut tags: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        if let Some(set) = rng.weighted(CONFIGURATION_SETS) {
            tags.insert("ses:configuration-set", vec![(*set).to_owned()]);
        }
        if let Some(tenant) = rng.weighted(TENANTS) {
            tags.insert("ses:tenant-name", vec![(*tenant).to_owned()]);
        }
        tags.insert("ses:operation", vec!["SendEmail".to_owned()]);
        tags.insert("ses:source-ip", vec![format!("192.0.2.{}", 1 + rng.below(254))]);
        tags.insert("ses:from-domain", vec![identity.to_owned()]);
        tags.insert("ses:caller-identity", vec!["app-sender".to_owned()]);
        tags.insert("campaign", vec![format!("c{}", rng.below(12))]);
        let mail = MailJson {
            timestamp: format_iso8601(sent),
            // Like SES's ids: the send time in hex, then a random UUID (a
            // backfill's are random throughout).
            message_id: format!(
                "0100{:012x}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}-000000",
                match c.arrival {
                    Arrival::Live => sent.0 as u64,
                    Arrival::Backfill => rng.next_u64() & 0xFFFF_FFFF_FFFF,
                },
                rng.next_u64() as u32,
                rng.next_u64() as u16,
                rng.next_u64() as u16,
                rng.next_u64() as u16,
                rng.next_u64() & 0xFFFF_FFFF_FFFF,
            ),
            source: sender.clone(),
            source_arn: format!("arn:aws:ses:us-east-1:{}:identity/{identity}", c.account_id),
            sending_account_id: c.account_id.clone(),
            destination: destination.iter().map(|(a, _)| a.clone()).collect(),
            headers_truncated: false,
            common_headers: CommonHeaders {
                from: vec![sender],
                to: destination.iter().map(|(a, _)| a.clone()).collect(),
                subject: (*rng.pick(SUBJECTS)).to_owned(),
            },
            tags,
        };

        let tracked = mail
            .tags
            .get("ses:configuration-set")
            .and_then(|s| s.first())
            .map(String::as_str)
            == Some(TRACKED_SET);
        let mut emit = |event: EventJson<'_>| {
            if let Ok(line) = serde_json::to_string(&event) {
                self.pending.push(line);
            }
        };
        // Rejected or unrenderable messages go no further.
        if rng.chance(0.003) {
            emit(EventJson::new("Reject", &mail).with("reject", serde_json::json!({"reason": "Bad content"})));
            return;
        }
        if rng.chance(0.002) {
            let failure =
                serde_json::json!({"errorMessage": "Attribute 'name' is not present", "templateName": "welcome"});
            emit(EventJson::new("Rendering Failure", &mail).with("failure", failure));
            return;
        }
        // A lost Send record must not hide a message that was clearly sent.
        if !rng.chance(0.01) {
            emit(EventJson::new("Send", &mail).with("send", serde_json::json!({})));
        }
        for (address, isp) in &destination {
            let mut t = sent + 500 + rng.below(30_000) as i64;
            if rng.chance(0.02) {
                let delay = serde_json::json!({
                    "timestamp": format_iso8601(t),
                    "delayType": "MailboxFull",
                    "expirationTime": format_iso8601(t + DAY_MILLIS),
                    "delayedRecipients": [{"emailAddress": address, "status": "4.2.2", "diagnosticCode": "smtp; 452 4.2.2 Mailbox full"}],
                });
                emit(EventJson::new("DeliveryDelay", &mail).with("deliveryDelay", delay));
                t += 3_600_000;
            }
            if rng.chance(isp.bounce) {
                let (bounce_type, sub_type) = *rng.weighted(BOUNCE_TYPES);
                let bounce = serde_json::json!({
                    "bounceType": bounce_type,
                    "bounceSubType": sub_type,
                    "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                    "timestamp": format_iso8601(t),
                    "feedbackId": format!("{:016x}", rng.next_u64()),
                    "reportingMTA": "dsn; a1-2.smtp-out.amazonses.com",
                });
                emit(EventJson::new("Bounce", &mail).with("bounce", bounce));
                continue;
            }
            let delivery = serde_json::json!({
                "timestamp": format_iso8601(t),
                "processingTimeMillis": t - sent,
                "recipients": [address],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            });
            emit(EventJson::new("Delivery", &mail).with("delivery", delivery));
            if tracked && rng.chance(isp.open) {
                let opens = if rng.chance(0.25) { 2 } else { 1 };
                let mut open_at = t;
                for _ in 0..opens {
                    open_at += 60_000 + rng.below(2 * DAY_MILLIS as u64) as i64;
                    let open = serde_json::json!({"timestamp": format_iso8601(open_at), "userAgent": "Mozilla/5.0", "ipAddress": "198.51.100.7"});
                    emit(EventJson::new("Open", &mail).with("open", open));
                }
                if rng.chance(isp.click) {
                    let click_at = open_at + 5_000 + rng.below(600_000) as i64;
                    let click = serde_json::json!({
                        "timestamp": format_iso8601(click_at),
                        "ipAddress": "198.51.100.7",
                        "userAgent": "Mozilla/5.0",
                        "link": format!("https://example.com/offer/{}", rng.below(20)),
                        "linkTags": {"campaign": ["spring"]},
                    });
                    emit(EventJson::new("Click", &mail).with("click", click));
                }
            }
            if rng.chance(isp.complaint) {
                // Now and then from the account-level suppression list.
                let sub_type = rng.chance(0.1).then_some("OnAccountSuppressionList");
                let complaint = serde_json::json!({
                    "complaintSubType": sub_type,
                    "timestamp": format_iso8601(t + 3_600_000 + rng.below(3 * DAY_MILLIS as u64) as i64),
                    "complainedRecipients": [{"emailAddress": address}],
                    "complaintFeedbackType": "abuse",
                    "feedbackId": format!("{:016x}", rng.next_u64()),
                    "userAgent": "Yahoo!-Mail-Feedback/2.0",
                });
                emit(EventJson::new("Complaint", &mail).with("complaint", complaint));
            }
            if rng.chance(0.003) {
                let subscription = serde_json::json!({
                    "contactList": "news",
                    "timestamp": format_iso8601(t + DAY_MILLIS),
                    "source": "UnsubscribeHeader",
                    "newTopicPreferences": {"unsubscribeAll": true},
                    "oldTopicPreferences": {"unsubscribeAll": false},
                });
                emit(EventJson::new("Subscription", &mail).with("subscription", subscription));
            }
        }
    }
}

fn pick_isp(rng: &mut Rng) -> &'static IspProfile {
    let mut pick = rng.unit() * ISPS.iter().map(|i| i.share).sum::<f64>();
    for isp in ISPS {
        if pick < isp.share {
            return isp;
        }
        pick -= isp.share;
    }
    &ISPS[ISPS.len() - 1]
}

impl Iterator for EventGenerator {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        while self.pending.is_empty() {
            if self.next_message >= self.config.messages {
                return None;
            }
            self.refill();
        }
        self.pending.pop()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MailJson {
    timestamp: String,
    message_id: String,
    source: String,
    source_arn: String,
    sending_account_id: String,
    destination: Vec<String>,
    headers_truncated: bool,
    common_headers: CommonHeaders,
    tags: BTreeMap<&'static str, Vec<String>>,
}

#[derive(Serialize)]
struct CommonHeaders {
    from: Vec<String>,
    to: Vec<String>,
    subject: String,
}

#[derive(Serialize)]
struct EventJson<'a> {
    #[serde(rename = "eventType")]
    event_type: &'static str,
    mail: &'a MailJson,
    #[serde(flatten)]
    detail: BTreeMap<&'static str, serde_json::Value>,
}

impl<'a> EventJson<'a> {
    fn new(event_type: &'static str, mail: &'a MailJson) -> Self {
        EventJson {
            event_type,
            mail,
            detail: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.detail.insert(key, value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_record;

    #[test]
    fn the_stream_is_reproducible_and_parses() {
        let config = GeneratorConfig {
            messages: 300,
            ..GeneratorConfig::default()
        };
        let a: Vec<String> = EventGenerator::new(config.clone()).collect();
        let b: Vec<String> = EventGenerator::new(config).collect();
        assert_eq!(a, b);
        assert!(a.len() > 600, "about three events a message, got {}", a.len());
        let kinds: std::collections::BTreeSet<&str> = a
            .iter()
            .map(|line| parse_record(line).expect(line).kind.ses_name())
            .collect();
        for kind in ["Send", "Delivery", "Bounce", "Open", "Click"] {
            assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
        }
    }

    /// A backfill has the same messages' worth of events, with ids that do
    /// not follow the send time; a live stream's ids do.
    #[test]
    fn a_backfill_arrives_out_of_order() {
        let ids = |arrival| -> Vec<(Millis, String)> {
            let config = GeneratorConfig {
                messages: 500,
                arrival,
                ..GeneratorConfig::default()
            };
            let mut seen = BTreeMap::new();
            for line in EventGenerator::new(config) {
                let event = parse_record(&line).expect("parses");
                seen.insert(event.mail.message_id.clone(), event.mail.timestamp);
            }
            let mut by_id: Vec<(Millis, String)> = seen.into_iter().map(|(id, sent)| (sent, id)).collect();
            by_id.sort_by(|a, b| a.1.cmp(&b.1));
            by_id
        };
        let in_time_order = |by_id: &[(Millis, String)]| by_id.windows(2).all(|w| w[0].0 <= w[1].0);
        let live = ids(Arrival::Live);
        let backfill = ids(Arrival::Backfill);
        assert_eq!(live.len(), backfill.len());
        assert!(in_time_order(&live), "live ids sort as their send times");
        assert!(!in_time_order(&backfill), "backfill ids do not");
    }
}
