//! `/metrics`: what the server did, in Prometheus' conventions, through
//! `prometheus-client` (OpenMetrics text): requests by operation and status
//! with their latency, events by source and outcome, rate-limit refusals,
//! jobs by status (counted in the job store at most once a second), how long jobs
//! took, and the build.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use ses_export_core::event_store::BatchOutcome;
use ses_export_core::vdm::Reputation;
use ses_export_core::{Region, Scope};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: &'static str,
    outcome: &'static str,
    region: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    region: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    region: String,
    source_type: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    account: String,
    region: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Where events came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `/_ses-export/v1/events` (SigV4 or an intake key).
    Events,
    /// `/_ses-export/v1/sns`.
    Sns,
    /// `/_ses-export/v1/firehose`.
    Firehose,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Events => "events",
            Source::Sns => "sns",
            Source::Firehose => "firehose",
        }
    }
}

fn request_latency() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn job_duration() -> Histogram {
    // 10 ms to about 5.7 hours.
    Histogram::new(exponential_buckets(0.01, 2.0, 21))
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
    events: Family<EventLabels, Counter>,
    rate_limited: Family<OperationLabels, Counter>,
    jobs: Family<StatusLabels, Gauge>,
    /// When the job gauge was last counted from the store.
    jobs_counted: std::sync::Mutex<Option<std::time::Instant>>,
    job_duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    /// The region labels given so far: only regions that hold data get
    /// one, and at most [`Metrics::MAX_REGIONS`] (a caller can name any
    /// region in an event's `sourceArn`); the rest are `other`.
    regions: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Per account and region, over the latest eligible sends; filled only
    /// with `--reputation-metrics`.
    bounce_rate: Family<ScopeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    complaint_rate: Family<ScopeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    reputation_sends: Family<ScopeLabels, Gauge>,
    /// When reputation was last read from the store.
    reputation_read: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry with every metric at zero (and the build's info).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ses_export");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by operation and status",
            requests.clone(),
        );
        let latency = Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(request_latency);
        registry.register(
            "request_duration_seconds",
            "Time from a request's head to its answer, by operation",
            latency.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "SES events taken in, by source (events, sns, firehose) and outcome (accepted, duplicate, rejected)",
            events.clone(),
        );
        let rate_limited = Family::<OperationLabels, Counter>::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429 (rate limits, ingest slots), by operation",
            rate_limited.clone(),
        );
        let jobs = Family::<StatusLabels, Gauge>::default();
        registry.register("export_jobs", "Export jobs in the job store, by status", jobs.clone());
        let job_duration = Family::<JobLabels, Histogram, fn() -> Histogram>::new_with_constructor(job_duration);
        registry.register(
            "export_job_duration_seconds",
            "Time from an export job's creation to its end, for jobs this server's workers ended",
            job_duration.clone(),
        );
        let bounce_rate = Family::<ScopeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "reputation_bounce_rate",
            "Permanent bounces over the latest eligible sends, per account and region (--reputation-metrics)",
            bounce_rate.clone(),
        );
        let complaint_rate = Family::<ScopeLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "reputation_complaint_rate",
            "Complaints over the latest eligible sends, per account and region (--reputation-metrics)",
            complaint_rate.clone(),
        );
        let reputation_sends = Family::<ScopeLabels, Gauge>::default();
        registry.register(
            "reputation_sends",
            "Eligible sends the reputation rates are over, per account and region (--reputation-metrics)",
            reputation_sends.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The server's version; always 1", build);
        Metrics {
            registry,
            requests,
            latency,
            events,
            rate_limited,
            jobs,
            jobs_counted: std::sync::Mutex::new(None),
            job_duration,
            regions: std::sync::Mutex::default(),
            bounce_rate,
            complaint_rate,
            reputation_sends,
            reputation_read: std::sync::Mutex::new(None),
        }
    }

    /// A request answered.
    pub fn request(&self, operation: &'static str, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { operation, status }).inc();
        self.latency
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
        if status == 429 {
            self.rate_limited.get_or_create(&OperationLabels { operation }).inc();
        }
    }

    /// Region labels at most; more regions share the label `other`.
    pub const MAX_REGIONS: usize = 32;

    /// `region` as a label value.
    fn region_label(&self, region: &str) -> String {
        let mut regions = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        if regions.contains(region) {
            return region.to_owned();
        }
        if regions.len() < Self::MAX_REGIONS {
            regions.insert(region.to_owned());
            return region.to_owned();
        }
        "other".to_owned()
    }

    /// Events from `source` kept in `region`: new ones and duplicates.
    pub fn events_stored(&self, source: Source, region: &Region, outcome: &BatchOutcome) {
        let region = self.region_label(region.as_str());
        for (kind, n) in [("accepted", outcome.accepted), ("duplicate", outcome.duplicates)] {
            self.events
                .get_or_create(&EventLabels {
                    source: source.label(),
                    outcome: kind,
                    region: region.clone(),
                })
                .inc_by(n);
        }
    }

    /// Lines from `source` that were not events, by the region of what
    /// carried them.
    pub fn events_rejected(&self, source: Source, region: &Region, rejected: u64) {
        let region = self.region_label(region.as_str());
        self.events
            .get_or_create(&EventLabels {
                source: source.label(),
                outcome: "rejected",
                region,
            })
            .inc_by(rejected);
    }

    /// A job a worker ended.
    pub fn job_ended(&self, region: &str, source_type: &str, status: &str, duration: Duration) {
        let region = self.region_label(region);
        self.job_duration
            .get_or_create(&JobLabels {
                region,
                source_type: source_type.to_owned(),
                status: status.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Whether this scrape should read reputation from the store: at most
    /// once every ten seconds (each scope's is a query over its latest
    /// sends).
    pub fn reputation_due(&self) -> bool {
        let mut read = self.reputation_read.lock().unwrap_or_else(|p| p.into_inner());
        if read.is_some_and(|at| at.elapsed() < Duration::from_secs(10)) {
            return false;
        }
        *read = Some(std::time::Instant::now());
        true
    }

    /// The reputation of every scope, as the store has it now.
    pub fn reputation(&self, scopes: &[(Scope, Reputation)]) {
        self.bounce_rate.clear();
        self.complaint_rate.clear();
        self.reputation_sends.clear();
        for (scope, reputation) in scopes {
            let labels = ScopeLabels {
                account: scope.account().as_str().to_owned(),
                region: scope.region().as_str().to_owned(),
            };
            self.reputation_sends
                .get_or_create(&labels)
                .set(i64::try_from(reputation.sends).unwrap_or(i64::MAX));
            if let (Some(bounce), Some(complaint)) = (reputation.bounce_rate(), reputation.complaint_rate()) {
                self.bounce_rate.get_or_create(&labels).set(bounce);
                self.complaint_rate.get_or_create(&labels).set(complaint);
            }
        }
    }

    /// Whether this scrape should count the store's jobs: at most once a
    /// second, however often `/metrics` is asked (it needs no signature).
    pub fn job_counts_due(&self) -> bool {
        let mut counted = self.jobs_counted.lock().unwrap_or_else(|p| p.into_inner());
        if counted.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *counted = Some(std::time::Instant::now());
        true
    }

    /// The page; `jobs`, when given, the job counts as the store has them
    /// now (else the gauge keeps its last counts).
    pub fn render(&self, jobs: Option<&[(String, String, u64)]>) -> String {
        if let Some(jobs) = jobs {
            self.jobs.clear();
            for (region, status, n) in jobs {
                let region = self.region_label(region);
                self.jobs
                    .get_or_create(&StatusLabels {
                        region,
                        status: status.clone(),
                    })
                    .inc_by(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
