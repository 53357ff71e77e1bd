-- Testbed: upstream's volumes/db/realtime.sql is not in ../shared (see its SOURCE.md);
-- the testbed's own: the schema Realtime keeps its tenants in, as its compose
-- DB_AFTER_CONNECT_QUERY ('SET search_path TO _realtime') expects.
\set pguser `echo "$POSTGRES_USER"`

create schema if not exists _realtime;
alter schema _realtime owner to :pguser;
