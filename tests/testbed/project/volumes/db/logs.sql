-- Testbed fallback for upstream's volumes/db/logs.sql (see _supabase.sql): Logflare's
-- schema in _supabase. Logflare creates its tables there itself at its first start.
\set pguser `echo "$POSTGRES_USER"`

\c _supabase
create schema if not exists _analytics;
alter schema _analytics owner to :pguser;
