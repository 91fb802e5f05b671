"""The work `cargo xtask bench` measures through the server, done by DuckDB
on the same file, as the anchor. One workload per process; prints one JSON
object with the result, `seconds` (the work only, not start-up) and
`peak_rss_bytes`.

    python3 duckdb_bench.py ingest DB JSONL
    python3 duckdb_bench.py insights DB              (the library example's query)
    python3 duckdb_bench.py insights_all DB          (the server's three exports)
    python3 duckdb_bench.py insights_gmail_delivered DB
    python3 duckdb_bench.py insights_from_news DB
    python3 duckdb_bench.py metrics DB               (the library example's interval)
    python3 duckdb_bench.py metrics_month DB         (the server's metrics export)
    python3 duckdb_bench.py warm DB RUNS             (the four server workloads,
                                                      RUNS times each on one open
                                                      connection: best of each)
"""

import json
import resource
import sys
import time

import duckdb

START_MS = 1_704_067_200_000
DAY_MS = 86_400_000
# The same interval as the Rust workloads: days 5⅓ to 25½.
INTERVAL = (START_MS + 5 * DAY_MS + DAY_MS // 3, START_MS + 25 * DAY_MS + DAY_MS // 2)

ISP_TABLE = {
    "gmail.com": "Gmail", "googlemail.com": "Gmail", "yahoo.com": "Yahoo", "ymail.com": "Yahoo",
    "rocketmail.com": "Yahoo", "outlook.com": "Hotmail", "hotmail.com": "Hotmail", "live.com": "Hotmail",
    "msn.com": "Hotmail", "aol.com": "AOL", "icloud.com": "Apple", "me.com": "Apple", "mac.com": "Apple",
    "comcast.net": "Comcast", "orange.fr": "Orange", "wanadoo.fr": "Orange", "gmx.de": "GMX", "gmx.net": "GMX",
    "web.de": "WEB.DE", "yandex.ru": "Yandex", "mail.ru": "Mail.Ru", "qq.com": "QQ",
}

COLUMNS = {
    "eventType": "VARCHAR",
    "mail": "STRUCT(\"timestamp\" VARCHAR, messageId VARCHAR, \"source\" VARCHAR, sourceArn VARCHAR, "
            "destination VARCHAR[], commonHeaders STRUCT(\"from\" VARCHAR[], subject VARCHAR), tags JSON)",
    "delivery": "STRUCT(\"timestamp\" VARCHAR, recipients VARCHAR[])",
    "bounce": "STRUCT(\"timestamp\" VARCHAR, bounceType VARCHAR, bouncedRecipients STRUCT(emailAddress VARCHAR)[], feedbackId VARCHAR)",
    "complaint": "STRUCT(\"timestamp\" VARCHAR, complainedRecipients STRUCT(emailAddress VARCHAR)[], feedbackId VARCHAR)",
    "deliveryDelay": "STRUCT(\"timestamp\" VARCHAR, delayedRecipients STRUCT(emailAddress VARCHAR)[])",
    "open": "STRUCT(\"timestamp\" VARCHAR, userAgent VARCHAR)",
    "click": "STRUCT(\"timestamp\" VARCHAR, link VARCHAR)",
    "subscription": "STRUCT(\"timestamp\" VARCHAR)",
}


def ingest(con, path):
    """Parse the records, then build one insight record per message and
    recipient (events deduplicated, flags OR-ed, ISP and identity derived),
    stored in the database file: what the Rust ingest keeps."""
    isp_case = " ".join(f"WHEN '{d}' THEN '{i}'" for d, i in ISP_TABLE.items())
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items()) + "}"
    con.execute(f"""
        CREATE TABLE insights AS
        WITH raw AS (
            SELECT * FROM read_json('{path}', format = 'newline_delimited', columns = {columns})
        ),
        ev AS (
            SELECT DISTINCT
                mail.messageId AS message_id,
                epoch_ms(CAST(mail."timestamp" AS TIMESTAMP)) AS send_ts,
                eventType AS event_type,
                coalesce(bounce.bounceType, '') AS bounce_type,
                coalesce(delivery."timestamp", bounce."timestamp", complaint."timestamp", open."timestamp",
                         click."timestamp", deliveryDelay."timestamp", subscription."timestamp", '') AS event_ts,
                coalesce(click.link, '') AS link,
                unnest(CASE eventType
                    WHEN 'Delivery' THEN delivery.recipients
                    WHEN 'Bounce' THEN list_transform(bounce.bouncedRecipients, lambda r: r.emailAddress)
                    WHEN 'Complaint' THEN list_transform(complaint.complainedRecipients, lambda r: r.emailAddress)
                    WHEN 'DeliveryDelay' THEN list_transform(deliveryDelay.delayedRecipients, lambda r: r.emailAddress)
                    ELSE mail.destination END) AS destination,
                coalesce(mail.commonHeaders."from"[1], mail."source") AS from_address,
                mail.commonHeaders.subject AS subject,
                CASE WHEN mail.sourceArn LIKE '%:identity/%' THEN split_part(mail.sourceArn, ':identity/', 2)
                     ELSE split_part(mail."source", '@', 2) END AS email_identity,
                json_extract_string(mail.tags, '$."ses:configuration-set"[0]') AS configuration_set,
                json_extract_string(mail.tags, '$."ses:tenant-name"[0]') AS tenant_name,
                json_extract_string(mail.tags, '$."ses:recipient-isp"[0]') AS isp_tag,
                len(mail.destination) AS recipient_count
            FROM raw
        )
        SELECT
            message_id, send_ts, destination,
            any_value(from_address) AS from_address,
            any_value(subject) AS subject,
            coalesce(any_value(isp_tag), CASE lower(split_part(destination, '@', 2)) {isp_case} ELSE 'UNKNOWN_ISP' END) AS isp,
            any_value(email_identity) AS email_identity,
            any_value(configuration_set) AS configuration_set,
            any_value(tenant_name) AS tenant_name,
            any_value(recipient_count) AS recipient_count,
            bool_or(event_type IN ('Send', 'Delivery', 'Bounce', 'Complaint', 'DeliveryDelay', 'Open', 'Click')) AS sent,
            bool_or(event_type = 'Delivery') AS delivered,
            bool_or(event_type = 'Bounce' AND bounce_type = 'Permanent') AS permanent_bounce,
            bool_or(event_type = 'Bounce' AND bounce_type = 'Transient') AS transient_bounce,
            bool_or(event_type = 'Complaint') AS complained,
            bool_or(event_type = 'Open') AS opened,
            bool_or(event_type = 'Click') AS clicked
        FROM ev
        GROUP BY message_id, send_ts, destination
        ORDER BY send_ts, message_id, destination
    """)
    return {"records": con.execute("SELECT count(*) FROM insights").fetchone()[0]}


def insights(con):
    """The same selection as the Rust workload: filters, a 10,000-record
    sample, rows in export order, fetched to the client."""
    processed = con.execute(
        "SELECT count(*) FROM insights WHERE send_ts BETWEEN ? AND ?", INTERVAL).fetchone()[0]
    rows = con.execute("""
        SELECT * FROM (
            SELECT * FROM insights
            WHERE send_ts BETWEEN ? AND ?
              AND starts_with(from_address, 'news@')
              AND isp IN ('Gmail', 'Yahoo', 'Hotmail')
        ) USING SAMPLE reservoir(10000 ROWS) REPEATABLE (7)
        ORDER BY send_ts, message_id, destination
    """, INTERVAL).fetchall()
    return {"processed": processed, "exported": len(rows)}


MONTH = (START_MS, START_MS + 31 * DAY_MS)


def sampled(con, where, interval=MONTH):
    """What a message-insights export with MaxResults 10,000 does: the
    matching records of the interval, a 10,000 sample, in export order,
    fetched whole to the client."""
    matched = con.execute(
        f"SELECT count(*) FROM insights WHERE send_ts BETWEEN ? AND ? AND ({where})", interval).fetchone()[0]
    rows = con.execute(f"""
        SELECT * FROM (
            SELECT * FROM insights WHERE send_ts BETWEEN ? AND ? AND ({where})
        ) USING SAMPLE reservoir(10000 ROWS) REPEATABLE (7)
        ORDER BY send_ts, message_id, destination
    """, interval).fetchall()
    return {"matched": matched, "exported": len(rows)}


def insights_all(con):
    return sampled(con, "true")


def insights_gmail_delivered(con):
    # LastDeliveryEvent = DELIVERY: delivered, no complaint after it, and a
    # record that shows delivery events (one recipient).
    return sampled(con, "isp = 'Gmail' AND recipient_count = 1 AND delivered AND NOT complained")


def insights_from_news(con):
    return sampled(con, "ends_with(from_address, '@news.example.com') AND NOT starts_with(subject, 'Your weekly')")


def metrics_month(con):
    """The server's metrics export: the ten metrics by ISP over 30 days."""
    return metrics(con, (START_MS, START_MS + 30 * DAY_MS), "isp, 0")


def metrics(con, interval=INTERVAL, group="email_identity, isp"):
    """All ten metrics' volumes by identity and ISP over the interval."""
    rows = con.execute(f"""
        SELECT {group},
               count(*) FILTER (WHERE sent) AS send,
               count(*) FILTER (WHERE complained) AS complaint,
               count(*) FILTER (WHERE permanent_bounce) AS permanent_bounce,
               count(*) FILTER (WHERE transient_bounce) AS transient_bounce,
               count(*) FILTER (WHERE opened) AS open,
               count(*) FILTER (WHERE clicked) AS click,
               count(*) FILTER (WHERE delivered) AS delivery,
               count(*) FILTER (WHERE delivered AND opened) AS delivery_open,
               count(*) FILTER (WHERE delivered AND clicked) AS delivery_click,
               count(*) FILTER (WHERE delivered AND complained) AS delivery_complaint
        FROM insights
        WHERE send_ts BETWEEN ? AND ? AND recipient_count = 1 AND sent
        GROUP BY ALL ORDER BY ALL
    """, interval).fetchall()
    return {"processed": sum(r[2] for r in rows), "rows": len(rows)}


WARM = ("insights_all", "insights_gmail_delivered", "insights_from_news", "metrics_month")


def warm(con, runs):
    """Each server workload `runs` times on one connection (its caches and
    the file's pages warm, as a long-running server's are): the best run of
    each, by seconds."""
    best = {}
    for workload in WARM:
        for _ in range(runs):
            started = time.perf_counter()
            result = globals()[workload](con)
            result["seconds"] = time.perf_counter() - started
            if workload not in best or result["seconds"] < best[workload]["seconds"]:
                best[workload] = result
    return best


def main():
    workload, db = sys.argv[1], sys.argv[2]
    con = duckdb.connect(db)
    if workload == "warm":
        print(json.dumps(warm(con, int(sys.argv[3]))))
        return
    started = time.perf_counter()
    if workload == "ingest":
        result = ingest(con, sys.argv[3])
        con.execute("CHECKPOINT")
    elif workload == "insights":
        result = insights(con)
    elif workload == "metrics":
        result = metrics(con)
    elif workload in ("insights_all", "insights_gmail_delivered", "insights_from_news", "metrics_month"):
        result = globals()[workload](con)
    else:
        raise SystemExit(f"unknown workload {workload}")
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
