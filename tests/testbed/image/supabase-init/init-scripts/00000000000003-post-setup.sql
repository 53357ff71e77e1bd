-- The image's last init script: the dashboard's role and the realtime schema.

create role dashboard_user nologin createdb createrole replication;
grant all on database postgres to dashboard_user;
grant all on schema auth to dashboard_user;
grant all on schema extensions to dashboard_user;
grant all on schema storage to dashboard_user;
grant all on all tables in schema auth to dashboard_user;
grant all on all tables in schema storage to dashboard_user;

create schema if not exists realtime;
grant usage on schema realtime to postgres, anon, authenticated, service_role;

create schema if not exists graphql_public;
grant usage on schema graphql_public to postgres, anon, authenticated, service_role;
