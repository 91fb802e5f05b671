//! The conformance suite for [`EventStore`] backends: async checks over
//! `&dyn EventStore` that every backend runs in its own tests. A backend is
//! done when it passes them; adding one means passing this, not writing new
//! tests.
//!
//! ```text
//! conformance::run(|| async { Box::new(MyStore::new()) as Box<dyn EventStore> }).await;
//! conformance::check_failed_batch_leaves_nothing(&my_store_that_fills_up).await;
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;

use futures_util::TryStreamExt;
use serde_json::{Value, json};

use super::{BatchOutcome, EventStore, MessageDetail, recount};
use crate::Scope;
use crate::clock::{DAY_MILLIS, Interval, Millis, format_iso8601};
use crate::event::EventKind;
use crate::event::{SesEvent, parse_record};
use crate::generate::{EventGenerator, GeneratorConfig};
use crate::insight::{EventFlags, InsightRecord};
use crate::vdm::{DailyCounts, Learned, Lesson, merge_daily};

/// Runs every check, each on fresh stores from `new_store`.
pub async fn run<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn EventStore>>,
{
    check_records_and_their_order(&*new_store().await).await;
    check_ingest_is_idempotent(&*new_store().await).await;
    check_order_does_not_matter(&*new_store().await, &*new_store().await).await;
    check_accounts_are_separate(&*new_store().await).await;
    check_message_insights(&*new_store().await).await;
    check_scan_bounds_are_inclusive(&*new_store().await).await;
    check_daily_counts_match_a_recount(&*new_store().await).await;
    check_expire_keeps_the_young(&*new_store().await).await;
    check_aws_definitions(&*new_store().await).await;
    check_any_complaint_teaches_its_isp(&*new_store().await).await;
    check_reputation(&*new_store().await).await;
}

/// A store whose days all settle after every batch, as if each batch came
/// long after the last: with `fold_ratio` 0 a day's late records stay
/// beside its segment (merged at every read), with `u64::MAX` each
/// compaction folds them in. Runs the suite over a backend's segments.
#[derive(Debug)]
pub struct SettledAfterEachBatch {
    store: Box<dyn EventStore>,
    fold_ratio: u64,
}

impl SettledAfterEachBatch {
    /// `store`, compacted after each batch with `fold_ratio`.
    pub fn new(store: Box<dyn EventStore>, fold_ratio: u64) -> Self {
        SettledAfterEachBatch { store, fold_ratio }
    }
}

#[async_trait::async_trait]
impl EventStore for SettledAfterEachBatch {
    async fn write_batch(&self, account: &Scope, events: Vec<SesEvent>) -> Result<BatchOutcome, super::StoreError> {
        let outcome = self.store.write_batch(account, events).await?;
        let plan = super::CompactionPlan {
            settled_before: Millis(i64::MAX / 2),
            quiet_since: Millis::MAX,
            fold_ratio: self.fold_ratio,
        };
        self.store.compact(&plan).await?;
        Ok(outcome)
    }

    fn scan_insights(&self, account: &Scope, interval: Interval) -> super::InsightStream {
        self.store.scan_insights(account, interval)
    }

    fn scan_insights_where(
        &self,
        account: &Scope,
        interval: Interval,
        keep: super::RecordFilter,
        control: std::sync::Arc<super::ScanControl>,
    ) -> super::InsightStream {
        self.store.scan_insights_where(account, interval, keep, control)
    }

    async fn message_insights(
        &self,
        account: &Scope,
        message_id: &str,
    ) -> Result<Option<MessageDetail>, super::StoreError> {
        self.store.message_insights(account, message_id).await
    }

    async fn daily_counts(&self, account: &Scope, interval: Interval) -> Result<Vec<DailyCounts>, super::StoreError> {
        self.store.daily_counts(account, interval).await
    }

    async fn expire(&self, before: Millis, max_messages: usize) -> Result<u64, super::StoreError> {
        self.store.expire(before, max_messages).await
    }

    async fn reputation(&self, scope: &Scope, sends: usize) -> Result<crate::vdm::Reputation, super::StoreError> {
        self.store.reputation(scope, sends).await
    }

    async fn scopes(&self) -> Result<Vec<Scope>, super::StoreError> {
        self.store.scopes().await
    }

    async fn compact(&self, plan: &super::CompactionPlan) -> Result<super::Compacted, super::StoreError> {
        self.store.compact(plan).await
    }
}

/// The account most checks use.
pub fn account() -> Scope {
    "111111111111/us-east-1".parse().expect("a scope")
}

fn other_account() -> Scope {
    "222222222222/us-east-1".parse().expect("a scope")
}

/// 2024-01-01T00:00:00Z.
pub const T0: Millis = Millis(1_704_067_200_000);

/// A record as SES writes it, for `message_id` sent at `sent` to
/// `destination`, with `detail` under the event type's key.
pub fn record(event_type: &str, message_id: &str, sent: Millis, destination: &[&str], detail: Value) -> Value {
    let key = match event_type {
        "Rendering Failure" => "failure".to_owned(),
        "DeliveryDelay" => "deliveryDelay".to_owned(),
        other => other.to_ascii_lowercase(),
    };
    let mut record = json!({
        "eventType": event_type,
        "mail": {
            "timestamp": format_iso8601(sent),
            "messageId": message_id,
            "source": "news@example.com",
            "sourceArn": "arn:aws:ses:us-east-1:111111111111:identity/example.com",
            "destination": destination,
            "commonHeaders": {"from": ["News <news@example.com>"], "subject": format!("Hello {message_id}")},
            "tags": {
                "ses:configuration-set": ["marketing"],
                "ses:tenant-name": ["tenant-a"],
                "campaign": ["spring", "sale"],
            },
        },
    });
    record[key] = detail;
    record
}

/// Parses records built by [`record`].
pub fn events(records: &[Value]) -> Vec<SesEvent> {
    records
        .iter()
        .map(|r| parse_record(&r.to_string()).expect("a well-formed record"))
        .collect()
}

fn at(t: Millis) -> String {
    format_iso8601(t)
}

/// Three messages: one delivered and clicked, one bounced, one to two
/// recipients of which one complained.
pub fn sample_records() -> Vec<Value> {
    let (a, b, c) = (T0 + 1000, T0 + 2000, T0 + 2000);
    vec![
        record("Send", "msg-a", a, &["ann@gmail.com"], json!({})),
        record(
            "Delivery",
            "msg-a",
            a,
            &["ann@gmail.com"],
            json!({"timestamp": at(a + 10), "recipients": ["ann@gmail.com"]}),
        ),
        record(
            "Open",
            "msg-a",
            a,
            &["ann@gmail.com"],
            json!({"timestamp": at(a + 60_000)}),
        ),
        record(
            "Click",
            "msg-a",
            a,
            &["ann@gmail.com"],
            json!({"timestamp": at(a + 61_000), "link": "https://example.com/x"}),
        ),
        record("Send", "msg-b", b, &["bob@yahoo.com"], json!({})),
        record(
            "Bounce",
            "msg-b",
            b,
            &["bob@yahoo.com"],
            json!({"timestamp": at(b + 5), "bounceType": "Permanent", "bounceSubType": "General",
                   "bouncedRecipients": [{"emailAddress": "bob@yahoo.com", "diagnosticCode": "smtp; 550 no such user"}]}),
        ),
        record("Send", "msg-c", c, &["cy@outlook.com", "dee@corp.example"], json!({})),
        record(
            "Delivery",
            "msg-c",
            c,
            &["cy@outlook.com", "dee@corp.example"],
            json!({"timestamp": at(c + 10), "recipients": ["cy@outlook.com", "dee@corp.example"]}),
        ),
        record(
            "Complaint",
            "msg-c",
            c,
            &["cy@outlook.com", "dee@corp.example"],
            json!({"timestamp": at(c + 99), "complaintFeedbackType": "abuse", "complaintSubType": null,
                   "complainedRecipients": [{"emailAddress": "dee@corp.example"}]}),
        ),
    ]
}

async fn scan_all(store: &dyn EventStore, account: &Scope) -> Vec<InsightRecord> {
    store
        .scan_insights(account, Interval::EVERYTHING)
        .try_collect()
        .await
        .expect("scan")
}

async fn ingest(store: &dyn EventStore, account: &Scope, events: Vec<SesEvent>) -> BatchOutcome {
    store.write_batch(account, events).await.expect("ingest")
}

/// Everything a store tells about an account, for comparing two stores.
async fn state(store: &dyn EventStore, account: &Scope) -> (Vec<InsightRecord>, Vec<DailyCounts>) {
    let counts = store
        .daily_counts(account, Interval::new(T0 - 30 * DAY_MILLIS, T0 + 60 * DAY_MILLIS))
        .await
        .expect("daily counts");
    (scan_all(store, account).await, counts)
}

/// One insight record per message and recipient, with the right fields
/// and flags, scanned in export order.
pub async fn check_records_and_their_order(store: &dyn EventStore) {
    let outcome = ingest(store, &account(), events(&sample_records())).await;
    assert_eq!(
        outcome,
        BatchOutcome {
            accepted: 9,
            duplicates: 0
        }
    );
    let records = scan_all(store, &account()).await;
    let summary: Vec<String> = records
        .iter()
        .map(|r| {
            let last = |e: Option<String>| e.unwrap_or_else(|| "-".to_owned());
            format!(
                "{} {} {} {} {}",
                r.message_id,
                r.destination,
                r.isp,
                last(r.last_delivery_event().map(|e| e.to_string())),
                last(r.last_engagement_event().map(|e| e.to_string())),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "msg-a ann@gmail.com Gmail DELIVERY CLICK",
            "msg-b bob@yahoo.com Yahoo PERMANENT_BOUNCE -",
            // Two recipients: AWS shows neither's delivery nor complaint.
            "msg-c cy@outlook.com Hotmail SEND -",
            "msg-c dee@corp.example UNKNOWN_ISP SEND -",
        ]
    );
    let a = &records[0];
    assert_eq!(a.send_timestamp, T0 + 1000);
    assert_eq!(a.from_email_address.as_deref(), Some("News <news@example.com>"));
    assert_eq!(a.subject.as_deref(), Some("Hello msg-a"));
    assert_eq!(a.email_identity.as_deref(), Some("example.com"));
    assert_eq!(a.configuration_set.as_deref(), Some("marketing"));
    assert_eq!(a.tenant_name.as_deref(), Some("tenant-a"));
    assert_eq!((a.recipient_count, records[2].recipient_count), (1, 2));
}

/// The same event again, via SNS, or twice in one batch counts once.
pub async fn check_ingest_is_idempotent(store: &dyn EventStore) {
    let batch = events(&sample_records());
    ingest(store, &account(), batch.clone()).await;
    let before = state(store, &account()).await;
    let again = ingest(store, &account(), batch.clone()).await;
    assert_eq!(
        again,
        BatchOutcome {
            accepted: 0,
            duplicates: 9
        }
    );
    // The same event wrapped in an SNS notification is the same event, and
    // twice in one batch counts once.
    let sns = json!({"Type": "Notification", "MessageId": "sns-1", "Message": sample_records()[1].to_string()});
    let wrapped = parse_record(&sns.to_string()).expect("SNS notification");
    assert_eq!(wrapped.id, batch[1].id);
    let new = parse_record(
        &record(
            "Open",
            "msg-b",
            T0 + 2000,
            &["bob@yahoo.com"],
            json!({"timestamp": at(T0 + 9000)}),
        )
        .to_string(),
    )
    .expect("record");
    let mixed = ingest(store, &account(), vec![wrapped, new.clone(), new]).await;
    assert_eq!(
        mixed,
        BatchOutcome {
            accepted: 1,
            duplicates: 2
        }
    );
    let (records, _) = state(store, &account()).await;
    assert_eq!(records.len(), before.0.len());
    assert!(records[1].flags.contains(EventFlags::OPEN));
}

/// The same events in another order and other batches give the same
/// records and counts (`in_order` and `shuffled` are two empty stores).
pub async fn check_order_does_not_matter(in_order: &dyn EventStore, shuffled: &dyn EventStore) {
    let stream = generated(7, 150);
    ingest(in_order, &account(), stream.clone()).await;
    // Backwards, in uneven batches, with a Delivery long before its Send.
    let mut reversed = stream;
    reversed.reverse();
    for chunk in reversed.chunks(37) {
        ingest(shuffled, &account(), chunk.to_vec()).await;
    }
    assert_eq!(state(in_order, &account()).await, state(shuffled, &account()).await);
}

/// One account never sees another's events.
pub async fn check_accounts_are_separate(store: &dyn EventStore) {
    ingest(store, &account(), events(&sample_records())).await;
    assert!(scan_all(store, &other_account()).await.is_empty());
    assert_eq!(
        store.message_insights(&other_account(), "msg-a").await.expect("read"),
        None
    );
    let counts = store
        .daily_counts(&other_account(), Interval::new(T0 - DAY_MILLIS, T0 + DAY_MILLIS))
        .await
        .expect("counts");
    assert!(counts.is_empty());
    // The same event in another account is not a duplicate there.
    let outcome = ingest(store, &other_account(), events(&sample_records()[..1])).await;
    assert_eq!(outcome.accepted, 1);
}

/// `message_insights` gives a message's text, tags, recipients and events.
pub async fn check_message_insights(store: &dyn EventStore) {
    ingest(store, &account(), events(&sample_records())).await;
    assert_eq!(store.message_insights(&account(), "msg-zzz").await.expect("read"), None);
    let detail: MessageDetail = store
        .message_insights(&account(), "msg-c")
        .await
        .expect("read")
        .expect("msg-c is kept");
    assert_eq!(detail.from_email_address.as_deref(), Some("News <news@example.com>"));
    assert_eq!(detail.subject.as_deref(), Some("Hello msg-c"));
    let tags: Vec<(&str, &str)> = detail.tags.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(
        tags,
        [
            ("campaign", "spring"),
            ("campaign", "sale"),
            ("ses:configuration-set", "marketing"),
            ("ses:tenant-name", "tenant-a"),
        ]
    );
    let kinds: Vec<(&str, Vec<&str>)> = detail
        .recipients
        .iter()
        .map(|r| {
            (
                r.destination.as_str(),
                r.events.iter().map(|e| e.kind.ses_name()).collect(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("cy@outlook.com", vec!["Send", "Delivery"]),
            ("dee@corp.example", vec!["Send", "Delivery", "Complaint"]),
        ]
    );
    let complaint = &detail.recipients[1].events[2];
    assert_eq!(complaint.complaint_feedback_type.as_deref(), Some("abuse"));
    let bounce = store
        .message_insights(&account(), "msg-b")
        .await
        .expect("read")
        .expect("msg-b");
    let event = &bounce.recipients[0].events[1];
    assert_eq!(event.bounce_type.as_ref().map(|b| b.as_str()), Some("PERMANENT"));
    assert_eq!(event.bounce_sub_type.as_deref(), Some("General"));
    assert_eq!(event.diagnostic_code.as_deref(), Some("smtp; 550 no such user"));
    assert_eq!(event.timestamp, T0 + 2005);
}

/// A scan's interval includes both its ends.
pub async fn check_scan_bounds_are_inclusive(store: &dyn EventStore) {
    ingest(store, &account(), events(&sample_records())).await;
    let scan = |start, end| async move {
        let records: Vec<InsightRecord> = store
            .scan_insights(&account(), Interval::new(start, end))
            .try_collect()
            .await
            .expect("scan");
        records.into_iter().map(|r| r.message_id).collect::<Vec<_>>()
    };
    assert_eq!(scan(T0 + 1000, T0 + 1000).await, ["msg-a"]);
    assert_eq!(scan(T0 + 1001, T0 + 2000).await, ["msg-b", "msg-c", "msg-c"]);
    assert!(scan(T0 + 1001, T0 + 1999).await.is_empty());
}

/// The daily rollups equal a recount of the records, whole days and
/// partial ones.
pub async fn check_daily_counts_match_a_recount(store: &dyn EventStore) {
    let stream = generated(11, 400);
    for chunk in stream.chunks(101) {
        ingest(store, &account(), chunk.to_vec()).await;
    }
    let records = reference_records(&stream);
    let hour = DAY_MILLIS / 24;
    let intervals = [
        Interval::new(T0, T0 + 3 * DAY_MILLIS - 1),
        Interval::new(T0 + 5 * hour, T0 + 2 * DAY_MILLIS + 7 * hour),
        Interval::new(T0 + hour, T0 + 2 * hour),
        Interval::new(T0 - DAY_MILLIS, T0 + 30 * DAY_MILLIS),
        Interval::new(T0 + DAY_MILLIS, T0 + DAY_MILLIS),
    ];
    for interval in intervals {
        let fast = store.daily_counts(&account(), interval).await.expect("counts");
        let slow = reference_counts(&records, &stream, interval);
        assert_eq!(fast, slow, "{interval:?}");
    }
}

/// docs/metrics.md as AWS defines it: what records show (multi-recipient, the
/// mailbox simulator, the suppression list) and what metrics count,
/// including deliveries that could be opened or complained about, learned
/// from later events and applied to earlier days.
pub async fn check_aws_definitions(store: &dyn EventStore) {
    let set = |mut r: Value, name: &str| {
        r["mail"]["tags"]["ses:configuration-set"] = json!([name]);
        r
    };
    let at = |t: Millis| format_iso8601(t);
    let day = DAY_MILLIS;
    let delivered = |id: &str, to: &str, t: Millis| {
        record(
            "Delivery",
            id,
            t,
            &[to],
            json!({"timestamp": at(t + 9), "recipients": [to]}),
        )
    };
    let first = vec![
        record("Send", "two", T0, &["a@yahoo.com", "b@yahoo.com"], json!({})),
        record(
            "Delivery",
            "two",
            T0,
            &["a@yahoo.com", "b@yahoo.com"],
            json!({"timestamp": at(T0 + 9), "recipients": ["a@yahoo.com", "b@yahoo.com"]}),
        ),
        record(
            "Open",
            "two",
            T0,
            &["a@yahoo.com", "b@yahoo.com"],
            json!({"timestamp": at(T0 + 99)}),
        ),
        record("Send", "sim", T0, &["success@SIMULATOR.amazonses.com"], json!({})),
        delivered("sim", "success@SIMULATOR.amazonses.com", T0),
        record("Send", "supp", T0, &["c@yahoo.com"], json!({})),
        record(
            "Bounce",
            "supp",
            T0,
            &["c@yahoo.com"],
            json!({"timestamp": at(T0 + 9), "bounceType": "Permanent",
            "bounceSubType": "OnAccountSuppressionList", "bouncedRecipients": [{"emailAddress": "c@yahoo.com"}]}),
        ),
        record("Send", "supc", T0, &["d@yahoo.com"], json!({})),
        delivered("supc", "d@yahoo.com", T0),
        record(
            "Complaint",
            "supc",
            T0,
            &["d@yahoo.com"],
            json!({"timestamp": at(T0 + 99),
            "complaintSubType": "OnAccountSuppressionList", "complainedRecipients": [{"emailAddress": "d@yahoo.com"}]}),
        ),
        set(record("Send", "quiet", T0, &["e@gmail.com"], json!({})), "quiet"),
        set(delivered("quiet", "e@gmail.com", T0), "quiet"),
    ];
    ingest(store, &account(), events(&first)).await;
    let shown: Vec<String> = scan_all(store, &account())
        .await
        .iter()
        .map(|r| {
            let last = |e: Option<String>| e.unwrap_or_else(|| "-".to_owned());
            format!(
                "{} {} {}",
                r.destination,
                last(r.last_delivery_event().map(|e| e.to_string())),
                last(r.last_engagement_event().map(|e| e.to_string()))
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "e@gmail.com DELIVERY -",
            "success@SIMULATOR.amazonses.com SEND -",
            "d@yahoo.com DELIVERY -",
            "c@yahoo.com SEND -",
            "a@yahoo.com SEND -",
            "b@yahoo.com SEND -",
        ]
    );
    let detail = store
        .message_insights(&account(), "two")
        .await
        .expect("read")
        .expect("a message");
    assert!(detail.recipients.iter().all(|r| r.recipient_count == 2), "{detail:?}");

    //                        SEND CMPL PERM TRAN OPEN CLIK DELV D_OP D_CL D_CM
    let day0 = |counts: &[DailyCounts]| {
        counts
            .iter()
            .filter(|c| c.day == T0.0 / day)
            .fold([0i64; 10], |mut sum, c| {
                for (s, n) in sum.iter_mut().zip(c.counts.0) {
                    *s += n;
                }
                sum
            })
    };
    let whole = Interval::new(T0, T0 + 3 * day - 1);
    let counts = store.daily_counts(&account(), whole).await.expect("counts");
    // Counted: supp (sent, no permanent bounce), supc (delivered, no
    // complaint), quiet (delivered); not the two-recipient message, not the
    // simulator. The two-recipient message's Open taught that "marketing"
    // is open-tracked (supc's set), "quiet" is not; no ISP has a feedback
    // loop yet (supc's complaint came from the suppression list).
    assert_eq!(day0(&counts), [3, 0, 0, 0, 0, 0, 2, 1, 0, 0]);

    // Two days later, the quiet set's first Open and Gmail's first counted
    // complaint: the first day's deliveries become ones that could be
    // opened and complained about.
    let later = vec![
        set(
            record("Send", "late", T0 + 2 * day, &["f@gmail.com"], json!({})),
            "quiet",
        ),
        set(delivered("late", "f@gmail.com", T0 + 2 * day), "quiet"),
        set(
            record(
                "Open",
                "late",
                T0 + 2 * day,
                &["f@gmail.com"],
                json!({"timestamp": at(T0 + 2 * day + 99)}),
            ),
            "quiet",
        ),
        set(
            record(
                "Complaint",
                "late",
                T0 + 2 * day,
                &["f@gmail.com"],
                json!({"timestamp": at(T0 + 2 * day + 999),
            "complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": "f@gmail.com"}]}),
            ),
            "quiet",
        ),
    ];
    ingest(store, &account(), events(&later)).await;
    let counts = store.daily_counts(&account(), whole).await.expect("counts");
    assert_eq!(day0(&counts), [3, 0, 0, 0, 0, 0, 2, 2, 0, 1]);
    // And the same over a partial day, recounted rather than rolled up.
    let partial = store
        .daily_counts(&account(), Interval::new(T0, T0 + day / 2))
        .await
        .expect("counts");
    assert_eq!(day0(&partial), [3, 0, 0, 0, 0, 0, 2, 2, 0, 1]);
}

/// A complaint teaches its ISP's feedback loop from a message of any number
/// of recipients, but not from the mailbox simulator or the suppression
/// list (SPEC §5): a single-recipient Yahoo delivery becomes one that could
/// be complained about once a two-recipient Yahoo message draws a complaint.
pub async fn check_any_complaint_teaches_its_isp(store: &dyn EventStore) {
    let at = |t: Millis| format_iso8601(t);
    let complaint = |id: &str, to: &[&str], from: &str, sub_type: Value| {
        record(
            "Complaint",
            id,
            T0,
            to,
            json!({"timestamp": at(T0 + 99), "complaintFeedbackType": "abuse", "complaintSubType": sub_type,
                   "complainedRecipients": [{"emailAddress": from}]}),
        )
    };
    let delivered = record(
        "Delivery",
        "one",
        T0,
        &["g@yahoo.com"],
        json!({"timestamp": at(T0 + 9), "recipients": ["g@yahoo.com"]}),
    );
    let first = vec![
        record("Send", "one", T0, &["g@yahoo.com"], json!({})),
        delivered,
        // Neither of these teaches anything.
        complaint(
            "sim",
            &["complaint@simulator.amazonses.com"],
            "complaint@simulator.amazonses.com",
            Value::Null,
        ),
        complaint(
            "supp",
            &["j@yahoo.com"],
            "j@yahoo.com",
            json!("OnAccountSuppressionList"),
        ),
    ];
    ingest(store, &account(), events(&first)).await;
    let complaints = |counts: &[DailyCounts]| counts.iter().map(|c| c.counts.0[9]).sum::<i64>();
    let whole = Interval::new(T0, T0 + DAY_MILLIS - 1);
    let counts = store.daily_counts(&account(), whole).await.expect("counts");
    assert_eq!(complaints(&counts), 0, "no feedback loop learned yet: {counts:?}");
    // A complaint from one recipient of a two-recipient message.
    let pair = vec![complaint(
        "pair",
        &["h@yahoo.com", "i@yahoo.com"],
        "h@yahoo.com",
        Value::Null,
    )];
    ingest(store, &account(), events(&pair)).await;
    let counts = store.daily_counts(&account(), whole).await.expect("counts");
    assert_eq!(complaints(&counts), 1, "Yahoo has a feedback loop: {counts:?}");
}

/// Five eligible sends (the oldest bounced permanently, the second
/// complained, the third bounced from the suppression list) and, newer
/// still, a two-recipient message and a mailbox-simulator one: a
/// reputation of 5 sends, 1 bounce, 1 complaint.
pub fn reputation_records() -> Vec<Value> {
    let at = |t: Millis| format_iso8601(t);
    let minute = 60_000;
    let mut records = Vec::new();
    for (i, to) in [
        "a@yahoo.com",
        "b@yahoo.com",
        "c@yahoo.com",
        "d@yahoo.com",
        "e@yahoo.com",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("rep-{i}");
        records.push(record("Send", &id, T0 + i as i64 * minute, &[to], json!({})));
    }
    // The oldest bounced permanently, the second complained, the third's
    // bounce came from the suppression list.
    records.push(record(
        "Bounce",
        "rep-0",
        T0,
        &["a@yahoo.com"],
        json!({"timestamp": at(T0 + 5), "bounceType": "Permanent", "bounceSubType": "General",
               "bouncedRecipients": [{"emailAddress": "a@yahoo.com"}]}),
    ));
    records.push(record(
        "Complaint",
        "rep-1",
        T0 + minute,
        &["b@yahoo.com"],
        json!({"timestamp": at(T0 + minute + 5), "complaintFeedbackType": "abuse",
               "complainedRecipients": [{"emailAddress": "b@yahoo.com"}]}),
    ));
    records.push(record(
        "Bounce",
        "rep-2",
        T0 + 2 * minute,
        &["c@yahoo.com"],
        json!({"timestamp": at(T0 + 2 * minute + 5), "bounceType": "Permanent",
               "bounceSubType": "OnAccountSuppressionList", "bouncedRecipients": [{"emailAddress": "c@yahoo.com"}]}),
    ));
    // Newer still, and not eligible.
    records.push(record(
        "Send",
        "rep-pair",
        T0 + 9 * minute,
        &["f@yahoo.com", "g@yahoo.com"],
        json!({}),
    ));
    records.push(record(
        "Send",
        "rep-sim",
        T0 + 9 * minute,
        &["bounce@simulator.amazonses.com"],
        json!({}),
    ));
    records
}

/// Reputation: bounces and complaints over the latest eligible sends, newest
/// first; multi-recipient messages and the mailbox simulator do not count,
/// nor do suppression-list bounces as bounces; every scope with data is
/// listed.
pub async fn check_reputation(store: &dyn EventStore) {
    ingest(store, &account(), events(&reputation_records())).await;
    let all = store.reputation(&account(), 100).await.expect("reputation");
    assert_eq!((all.sends, all.bounces, all.complaints), (5, 1, 1), "{all:?}");
    assert_eq!(all.bounce_rate(), Some(0.2));
    // The latest four: the bounce of the oldest falls out.
    let latest = store.reputation(&account(), 4).await.expect("reputation");
    assert_eq!(
        (latest.sends, latest.bounces, latest.complaints),
        (4, 0, 1),
        "{latest:?}"
    );
    let none = store.reputation(&other_account(), 100).await.expect("reputation");
    assert_eq!(none.bounce_rate(), None);
    assert_eq!(store.scopes().await.expect("scopes"), vec![account()]);
}

/// Retention: `expire` deletes, across accounts, exactly the messages sent
/// before the cutoff (events, records, rollups of those days), in steps of
/// the size asked, and leaves everything younger as it was.
pub async fn check_expire_keeps_the_young(store: &dyn EventStore) {
    let stream = generated(13, 300);
    for who in [account(), other_account()] {
        for chunk in stream.chunks(97) {
            ingest(store, &who, chunk.to_vec()).await;
        }
    }
    let before = T0 + DAY_MILLIS;
    let young = Interval::new(before, T0 + 30 * DAY_MILLIS);
    let young_records = |records: Vec<InsightRecord>| -> Vec<InsightRecord> {
        records.into_iter().filter(|r| r.send_timestamp >= before).collect()
    };
    let kept_records = young_records(scan_all(store, &account()).await);
    let kept_counts = store.daily_counts(&account(), young).await.expect("counts");
    let old_messages: HashSet<&str> = stream
        .iter()
        .filter(|e| e.mail.timestamp < before)
        .map(|e| e.mail.message_id.as_str())
        .collect();
    assert!(!old_messages.is_empty() && !kept_records.is_empty());

    let mut deleted = 0;
    loop {
        let step = store.expire(before, 40).await.expect("expire");
        assert!(step <= 40);
        deleted += step;
        if step < 40 {
            break;
        }
    }
    assert_eq!(deleted, 2 * old_messages.len() as u64, "both accounts' old messages");
    for who in [account(), other_account()] {
        let all = scan_all(store, &who).await;
        assert!(all.iter().all(|r| r.send_timestamp >= before), "an old record is left");
        let old_counts = store
            .daily_counts(&who, Interval::new(T0 - DAY_MILLIS, before - 1))
            .await
            .expect("counts");
        assert!(old_counts.is_empty(), "old rollups are left: {old_counts:?}");
    }
    assert_eq!(scan_all(store, &account()).await, kept_records, "young records changed");
    assert_eq!(
        store.daily_counts(&account(), young).await.expect("counts"),
        kept_counts
    );
    let old_id = old_messages.iter().next().expect("an old message");
    assert!(
        store
            .message_insights(&account(), old_id)
            .await
            .expect("read")
            .is_none()
    );
    // The events went too: ingesting the old ones again keeps them anew.
    let old_events: Vec<SesEvent> = stream.iter().filter(|e| e.mail.timestamp < before).cloned().collect();
    let again = ingest(store, &account(), old_events).await;
    assert!(again.accepted > 0 && again.duplicates == 0, "{again:?}");
}

/// Scans while late events arrive and `compactors` (the store itself, or
/// other servers on the same data) settle and fold days: every scan sees
/// each record once, in order, and none with a flag it will not end with
/// (a record appears when its first event does, so a scan sees a part of
/// the final records); at the end, the reference. For backends that keep
/// settled days as segments.
pub async fn check_scans_during_compactions(
    store: std::sync::Arc<dyn EventStore>,
    compactors: Vec<std::sync::Arc<dyn EventStore>>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stream = generated(21, 400);
    let mut expected = reference_records(&stream);
    expected.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let (sends, rest): (Vec<_>, Vec<_>) = stream.iter().cloned().partition(|e| e.kind == EventKind::Send);
    let plan = super::CompactionPlan {
        settled_before: Millis(i64::MAX / 2),
        quiet_since: Millis::MAX,
        fold_ratio: u64::MAX,
    };
    ingest(&*store, &account(), sends).await;
    store.compact(&plan).await.expect("settle");

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        tokio::spawn(async move {
            for chunk in rest.chunks(25) {
                store
                    .write_batch(&account(), chunk.to_vec())
                    .await
                    .expect("late events");
                tokio::task::yield_now().await;
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let compactors: Vec<_> = compactors
        .into_iter()
        .map(|compactor| {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let mut folded = 0;
                while !done.load(Ordering::Relaxed) {
                    folded += compactor.compact(&plan).await.expect("fold").segments;
                }
                folded
            })
        })
        .collect();
    let finals: HashMap<_, _> = expected.iter().map(|r| (r.sort_key(), r.flags)).collect();
    let mut scans = 0;
    while !done.load(Ordering::Relaxed) || scans == 0 {
        let seen = scan_all(&*store, &account()).await;
        for pair in seen.windows(2) {
            assert!(
                pair[0].sort_key() < pair[1].sort_key(),
                "in order, once: {:?}",
                pair[1].sort_key()
            );
        }
        for got in &seen {
            let end = finals.get(&got.sort_key()).expect("a record of the stream");
            assert_eq!(got.flags.union(*end), *end, "{}", got.message_id);
        }
        scans += 1;
    }
    writer.await.expect("writer");
    let mut folded = 0;
    for compactor in compactors {
        folded += compactor.await.expect("compactor");
    }
    assert!(folded > 0 && scans > 1, "{folded} folds, {scans} scans");
    store.compact(&plan).await.expect("last fold");
    assert_eq!(scan_all(&*store, &account()).await, expected);
}

/// A store that the next large batch will fill: it must fail whole, leaving
/// what was kept before untouched, and keep working afterwards.
pub async fn check_failed_batch_leaves_nothing(store_that_fills: &dyn EventStore) {
    let store = store_that_fills;
    ingest(store, &account(), events(&sample_records())).await;
    let before = state(store, &account()).await;
    let detail = store.message_insights(&account(), "msg-a").await.expect("read");
    let big = generated(3, 3000);
    let result = store.write_batch(&account(), big).await;
    assert!(result.is_err(), "the batch was meant to overflow the store");
    assert_eq!(state(store, &account()).await, before);
    assert_eq!(store.message_insights(&account(), "msg-a").await.expect("read"), detail);
    let small = events(&[record("Send", "msg-z", T0, &["z@gmail.com"], json!({}))]);
    assert_eq!(ingest(store, &account(), small).await.accepted, 1);
}

/// A generated event stream, parsed.
pub fn generated(seed: u64, messages: u64) -> Vec<SesEvent> {
    let config = GeneratorConfig::new(seed, messages, T0, 3);
    EventGenerator::new(config)
        .map(|line| parse_record(&line).expect("generated records parse"))
        .collect()
}

/// What `events` teach, computed the plain way from the events themselves
/// (docs/metrics.md): configuration sets named by an Open (Click) are open-
/// (click-) tracked; the ISP of a recipient of a complaint (not from the
/// suppression list, to a real mailbox, on a message of any number of
/// recipients) has a feedback loop.
pub fn reference_learned(events: &[SesEvent]) -> Learned {
    let mut learned = Learned::default();
    for event in events {
        let set = event.mail.tag("ses:configuration-set").map(str::to_owned);
        match event.kind {
            EventKind::Open => set.into_iter().for_each(|s| learned.learn(Lesson::OpenTracked, s)),
            EventKind::Click => set.into_iter().for_each(|s| learned.learn(Lesson::ClickTracked, s)),
            EventKind::Complaint => {
                let suppressed = event.complaint.as_ref().and_then(|c| c.complaint_sub_type.as_deref())
                    == Some("OnAccountSuppressionList");
                for (recipient, _) in event.belongs_to() {
                    let simulator = recipient.to_ascii_lowercase().ends_with("@simulator.amazonses.com");
                    if !suppressed && !simulator {
                        learned.learn(Lesson::FeedbackLoop, crate::insight::isp_for(&event.mail, recipient));
                    }
                }
            }
            _ => {}
        }
    }
    learned
}

/// Daily counts of `records` recounted the plain way, with what `events`
/// teach applied: what a store's `daily_counts` must equal.
pub fn reference_counts(records: &[InsightRecord], events: &[SesEvent], interval: Interval) -> Vec<DailyCounts> {
    let mut counts = merge_daily(recount(records.iter().filter(|r| interval.contains(r.send_timestamp))));
    reference_learned(events).apply(&mut counts);
    counts
}

/// The insight records of `events` computed the plain way, with no store:
/// the reference that backends are checked against.
pub fn reference_records(events: &[SesEvent]) -> Vec<InsightRecord> {
    let mut seen: HashSet<(&str, [u8; 16], &str)> = HashSet::new();
    let mut records: HashMap<(Millis, &str, &str), InsightRecord> = HashMap::new();
    for event in events {
        let bit = crate::event_store::batch::event_bit(event);
        for (recipient, _) in event.belongs_to() {
            if !seen.insert((&event.mail.message_id, event.id, recipient)) {
                continue;
            }
            let record = records
                .entry((event.mail.timestamp, &event.mail.message_id, recipient))
                .or_insert_with(|| InsightRecord::new(&event.mail, recipient));
            record.flags = record.flags.union(bit);
        }
    }
    let mut out: Vec<InsightRecord> = records.into_values().collect();
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    out
}
