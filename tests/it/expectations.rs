//! Expected export rows, computed from the raw SES records the plain way,
//! independently of the server's code: one record per message and
//! recipient, docs/metrics.md's derivations written out again here.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One expected message-insights row, with the flags metrics need.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub message_id: String,
    pub sent_ms: i64,
    pub send_timestamp: String,
    pub from: String,
    pub destination: String,
    pub subject: String,
    pub isp: String,
    pub identity: String,
    pub configuration_set: String,
    pub tenant: String,
    pub recipients: usize,
    pub events: BTreeSet<String>,
}

impl Row {
    /// Whether AWS shows this recipient's delivery and engagement events:
    /// one recipient, not at the mailbox simulator.
    pub fn shows_every_event(&self) -> bool {
        self.recipients == 1
            && !self
                .destination
                .to_ascii_lowercase()
                .ends_with("@simulator.amazonses.com")
    }

    pub fn last_delivery_event(&self) -> &'static str {
        let has = |e: &str| self.shows_every_event() && self.events.contains(e);
        if has("Complaint") {
            "COMPLAINT"
        } else if has("Delivery") {
            "DELIVERY"
        } else if has("Bounce:Permanent") {
            "PERMANENT_BOUNCE"
        } else if has("Bounce:Transient") {
            "TRANSIENT_BOUNCE"
        } else if has("Bounce:Undetermined") {
            "UNDETERMINED_BOUNCE"
        } else if self.sent() {
            "SEND"
        } else {
            ""
        }
    }

    pub fn last_engagement_event(&self) -> &'static str {
        if !self.shows_every_event() {
            ""
        } else if self.events.contains("Click") {
            "CLICK"
        } else if self.events.contains("Open") {
            "OPEN"
        } else {
            ""
        }
    }

    pub fn sent(&self) -> bool {
        self.events.iter().any(|e| {
            ["Send", "Delivery", "Complaint", "DeliveryDelay", "Open", "Click"].contains(&e.as_str())
                || e.starts_with("Bounce")
                || e.starts_with("Complaint")
        })
    }

    /// The CSV line the export should have.
    pub fn csv(&self) -> String {
        [
            &self.message_id,
            &self.send_timestamp,
            &self.from,
            &self.destination,
            &quote(&self.subject),
            &self.isp,
            &self.identity,
            &self.configuration_set,
            &self.tenant,
            self.last_delivery_event(),
            self.last_engagement_event(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn isp(tags: &Value, address: &str) -> String {
    if let Some(tag) = tags["ses:recipient-isp"][0].as_str() {
        return tag.to_owned();
    }
    let domain = address.rsplit('@').next().unwrap_or("").to_ascii_lowercase();
    let isp = match domain.as_str() {
        "gmail.com" | "googlemail.com" => "Gmail",
        "yahoo.com" | "ymail.com" | "rocketmail.com" => "Yahoo",
        "outlook.com" | "hotmail.com" | "live.com" | "msn.com" => "Hotmail",
        "aol.com" => "AOL",
        "icloud.com" | "me.com" | "mac.com" => "Apple",
        "comcast.net" => "Comcast",
        "orange.fr" | "wanadoo.fr" => "Orange",
        "gmx.de" | "gmx.net" => "GMX",
        "web.de" => "WEB.DE",
        "yandex.ru" => "Yandex",
        "mail.ru" => "Mail.Ru",
        "qq.com" => "QQ",
        _ => "UNKNOWN_ISP",
    };
    isp.to_owned()
}

/// The records of a JSON Lines stream, deduplicated by their whole text.
pub fn rows(lines: &str) -> Vec<Row> {
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        if !seen.insert(line.to_owned()) {
            continue;
        }
        let record: Value = serde_json::from_str(line).expect("a record");
        let kind = record["eventType"].as_str().expect("eventType").to_owned();
        let mail = &record["mail"];
        let destination: Vec<String> = mail["destination"]
            .as_array()
            .expect("destination")
            .iter()
            .map(|d| d.as_str().expect("address").to_owned())
            .collect();
        let named = |list: &Value, key: Option<&str>| -> Vec<String> {
            list.as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| match key {
                            Some(k) => r[k].as_str().expect("address").to_owned(),
                            None => r.as_str().expect("address").to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let recipients = match kind.as_str() {
            "Delivery" => named(&record["delivery"]["recipients"], None),
            "Bounce" => named(&record["bounce"]["bouncedRecipients"], Some("emailAddress")),
            "Complaint" => named(&record["complaint"]["complainedRecipients"], Some("emailAddress")),
            "DeliveryDelay" => named(&record["deliveryDelay"]["delayedRecipients"], Some("emailAddress")),
            _ => destination.clone(),
        };
        // The account-level suppression list: a Permanent bounce that is no
        // PERMANENT_BOUNCE, a complaint that is no COMPLAINT.
        let suppressed = |detail: &Value, field: &str| detail[field].as_str() == Some("OnAccountSuppressionList");
        let event = if kind == "Bounce" {
            let bounce_type = record["bounce"]["bounceType"].as_str().unwrap_or("Undetermined");
            if bounce_type == "Permanent" && suppressed(&record["bounce"], "bounceSubType") {
                "Bounce:Suppressed".to_owned()
            } else {
                format!("Bounce:{bounce_type}")
            }
        } else if kind == "Complaint" && suppressed(&record["complaint"], "complaintSubType") {
            "Complaint:Suppressed".to_owned()
        } else {
            kind.clone()
        };
        let tags = &mail["tags"];
        let sent = mail["timestamp"].as_str().expect("timestamp");
        let identity = mail["sourceArn"]
            .as_str()
            .and_then(|arn| arn.split(":identity/").nth(1))
            .expect("identity")
            .to_owned();
        for recipient in recipients {
            let key = (mail["messageId"].as_str().expect("id").to_owned(), recipient.clone());
            let row = rows.entry(key).or_insert_with(|| Row {
                message_id: mail["messageId"].as_str().expect("id").to_owned(),
                sent_ms: millis(sent),
                send_timestamp: sent.to_owned(),
                from: mail["commonHeaders"]["from"][0].as_str().unwrap_or("").to_owned(),
                destination: recipient.clone(),
                subject: mail["commonHeaders"]["subject"].as_str().unwrap_or("").to_owned(),
                isp: isp(tags, &recipient),
                identity: identity.clone(),
                configuration_set: tags["ses:configuration-set"][0].as_str().unwrap_or("").to_owned(),
                tenant: tags["ses:tenant-name"][0].as_str().unwrap_or("").to_owned(),
                recipients: destination.len(),
                events: BTreeSet::new(),
            });
            row.events.insert(event.clone());
        }
    }
    let mut out: Vec<Row> = rows.into_values().collect();
    out.sort_by(|a, b| (a.sent_ms, &a.message_id, &a.destination).cmp(&(b.sent_ms, &b.message_id, &b.destination)));
    out
}

/// `2024-01-01T00:00:00.000Z` to milliseconds.
pub fn millis(iso: &str) -> i64 {
    let (date, time) = iso.trim_end_matches('Z').split_once('T').expect("ISO time");
    let mut d = date.split('-').map(|p| p.parse::<i64>().expect("number"));
    let (y, m, day) = (d.next().expect("y"), d.next().expect("m"), d.next().expect("d"));
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().expect("number"));
    let (h, mi, s) = (t.next().expect("h"), t.next().expect("m"), t.next().expect("s"));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms.parse::<i64>().expect("ms")
}
