\set pguser `echo "$POSTGRES_USER"`
\set pgpass `echo "$POSTGRES_PASSWORD"`

\c _supabase
create schema if not exists _analytics;
alter schema _analytics owner to :pguser;

-- Testbed: the table Logflare creates on its first start, with the Postgres backend
-- whose URL embeds the password (utils/db-passwd.sh rewrites it).
create table _analytics.source_backends (
  id bigserial primary key,
  type text not null,
  config jsonb not null
);
alter table _analytics.source_backends owner to :pguser;
insert into _analytics.source_backends (type, config) values (
  'postgres',
  jsonb_build_object('url', 'postgresql://' || :'pguser' || ':' || :'pgpass' || '@db:5432/postgres')
);
