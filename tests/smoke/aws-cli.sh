#!/usr/bin/env bash
# Smoke test of the unmodified AWS CLI against ses-export-server: start the
# server, ingest generated events, and drive every operation with
# `aws sesv2 ... --endpoint-url`. Usage: tests/smoke/aws-cli.sh [TARGET_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:-target/debug}
work=$(mktemp -d)
# Stop the server and wait for its clean exit (it folds SQLite's log into the
# database as it goes) before removing its data.
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$target/ses-export-server" --listen 127.0.0.1:0 --data-dir "$work/data" --rate-limits off \
  >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/stdout" 2>/dev/null && break
  sleep 0.1
done
endpoint=$(sed -n 's/^listening on //p' "$work/stdout")
[ -n "$endpoint" ] || { echo "the server did not start:"; cat "$work/stderr"; exit 1; }
echo "server at $endpoint"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
aws() { command aws --endpoint-url "$endpoint" --output json "$@"; }
check() { if ! python3 -c "import json,sys; d=json.load(open('$work/out')); assert $1, d" ; then echo "FAILED: $1"; exit 1; fi; echo "ok: $2"; }

"$target/examples/bench" generate 200 "$work/events.jsonl" >/dev/null
curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:ses" --user test:test \
  -H 'content-type: application/x-ndjson' --data-binary @"$work/events.jsonl" \
  "$endpoint/_ses-export/v1/events" >"$work/out"
check "d['accepted'] > 400 and d['rejected'] == 0" "ingest"

aws sesv2 create-export-job \
  --export-data-source '{"MessageInsightsDataSource": {"StartDate": 1704067200, "EndDate": 1706745600.5, "Include": {"Isp": ["Gmail"]}, "MaxResults": 50}}' \
  --export-destination '{"DataFormat": "CSV"}' >"$work/out"
check "len(d['JobId']) == 36" "create-export-job"
job=$(python3 -c "import json; print(json.load(open('$work/out'))['JobId'])")

for _ in $(seq 100); do
  aws sesv2 get-export-job --job-id "$job" >"$work/out"
  python3 -c "import json,sys; sys.exit(json.load(open('$work/out'))['JobStatus'] != 'COMPLETED')" && break
  sleep 0.1
done
check "d['JobStatus'] == 'COMPLETED' and d['Statistics']['ExportedRecordsCount'] == 50" "get-export-job"
check "d['ExportDataSource']['MessageInsightsDataSource'] == {'StartDate': 1704067200, 'EndDate': 1706745600, 'Include': {'Isp': ['Gmail']}, 'MaxResults': 50}" "the data source comes back as sent (botocore sends whole seconds)"
url=$(python3 -c "import json; print(json.load(open('$work/out'))['ExportDestination']['S3Url'])")
curl -sS --fail "$url" >"$work/export.csv"
head -1 "$work/export.csv" | grep -q '^MESSAGE_ID,SEND_TIMESTAMP,FROM_EMAIL_ADDRESS,DESTINATION,SUBJECT,ISP,' && echo "ok: download"
[ "$(wc -l <"$work/export.csv")" -eq 51 ] && echo "ok: 50 rows"

aws sesv2 list-export-jobs --page-size 10 >"$work/out"
check "[j['JobId'] for j in d['ExportJobs']] == ['$job']" "list-export-jobs"

message=$(head -1 "$work/export.csv" >/dev/null; sed -n 2p "$work/export.csv" | cut -d, -f1)
aws sesv2 get-message-insights --message-id "$message" >"$work/out"
check "d['MessageId'] == '$message' and d['Insights'][0]['Isp'] == 'Gmail'" "get-message-insights"

aws sesv2 batch-get-metric-data --queries '[{"Id": "q1", "Namespace": "VDM", "Metric": "SEND", "StartDate": 1704067200, "EndDate": 1704412800}]' >"$work/out"
check "len(d['Results'][0]['Values']) == 5 and sum(d['Results'][0]['Values']) > 0" "batch-get-metric-data"

if aws sesv2 cancel-export-job --job-id "$job" 2>"$work/err"; then
  echo "FAILED: cancelling a finished job must fail"; exit 1
fi
grep -q 'BadRequestException' "$work/err" && echo "ok: cancel-export-job of a finished job is a BadRequestException"

if AWS_SECRET_ACCESS_KEY=wrong aws sesv2 list-export-jobs 2>"$work/err"; then
  echo "FAILED: a wrong secret must fail"; exit 1
fi
grep -q 'InvalidSignatureException' "$work/err" && echo "ok: a wrong secret is an InvalidSignatureException"
echo "AWS CLI smoke: all passed"
