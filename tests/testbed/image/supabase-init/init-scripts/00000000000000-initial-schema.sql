-- The image's first init script (run as postgres): the API roles, the extensions schema,
-- default privileges for what supabase_admin and postgres create in public.

create publication supabase_realtime;

alter role supabase_admin with superuser createdb createrole replication bypassrls;

create role supabase_replication_admin with login replication;

-- LOGIN and no password: nothing can sign in as it until someone sets one (CONFIG.md).
create role supabase_read_only_user with login bypassrls;
grant pg_read_all_data to supabase_read_only_user;

create schema if not exists extensions;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;

create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;

-- PostgREST logs in as authenticator and switches to the role the request's JWT names.
create role authenticator login noinherit;
grant anon, authenticated, service_role to authenticator;
grant supabase_admin to authenticator;

grant usage on schema public to postgres, anon, authenticated, service_role;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
alter default privileges in schema public
    grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges in schema public
    grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges in schema public
    grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
    grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
    grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
    grant all on functions to postgres, anon, authenticated, service_role;

alter role supabase_admin set search_path to public, extensions;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
