-- The pgbouncer setup the image does before the project's roles.sql runs: the role Supavisor's tenant
-- manages the pool as, and the auth_query function pooler.exs configures
-- ("SELECT * FROM pgbouncer.get_auth($1)"), which reads password hashes for it.

create role pgbouncer login;
create schema if not exists pgbouncer authorization pgbouncer;

create or replace function pgbouncer.get_auth(p_usename text)
returns table (username text, password text)
language plpgsql security definer as $$
begin
    return query
    select usename::text, passwd::text from pg_catalog.pg_shadow where usename = p_usename;
end;
$$;

revoke all on function pgbouncer.get_auth(p_usename text) from public;
grant execute on function pgbouncer.get_auth(p_usename text) to pgbouncer;
