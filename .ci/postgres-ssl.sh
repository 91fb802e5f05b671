#!/usr/bin/env bash
# Turns on SSL in the PostgreSQL at 127.0.0.1:5432 with a certificate for
# 127.0.0.1 and localhost, signed by a CA made here; prints the CA's path
# (for SES_EXPORT_TEST_PG_SSL_ROOT). Idempotent: a second run reuses both.
set -euo pipefail
dir=/var/lib/postgresql/ses-export-ssl
if [ ! -s "$dir/server.pem" ] || [ ! -s "$dir/ca.pem" ]; then
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ses-export CI CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 3650 -extfile "$dir/ext.cnf" -out "$dir/server.pem" 2>/dev/null
  chmod 600 "$dir/server.key" "$dir/ca.key"
  chown -R postgres:postgres "$dir"
fi
psql -q -X -h 127.0.0.1 -U postgres -d test -v ON_ERROR_STOP=1 >/dev/null <<SQL
ALTER SYSTEM SET ssl_cert_file = '$dir/server.pem';
ALTER SYSTEM SET ssl_key_file = '$dir/server.key';
ALTER SYSTEM SET ssl = on;
SELECT pg_reload_conf();
SQL
# The reload is asynchronous: wait until a connection can require SSL.
for _ in $(seq 50); do
  if psql -q -X "host=127.0.0.1 user=postgres dbname=test sslmode=require" -c 'SELECT 1' >/dev/null 2>&1; then
    echo "$dir/ca.pem"
    exit 0
  fi
  sleep 0.2
done
echo "PostgreSQL did not start serving SSL" >&2
exit 1
