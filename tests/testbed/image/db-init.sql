-- What supabase/postgres creates before the project's init scripts run: the roles
-- (the twelve that utils/db-passwd.sh rotates, plus supabase_read_only_user) and the
-- schemas their services own. Runs once, as the bootstrap superuser supabase_admin.
--
-- Passwords: every one of the twelve gets POSTGRES_PASSWORD, so the database starts in
-- the state utils/db-passwd.sh leaves it in. supabase_read_only_user has none.
\set pgpass `echo "$POSTGRES_PASSWORD"`

CREATE ROLE postgres SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS LOGIN PASSWORD :'pgpass';

CREATE ROLE anon NOLOGIN NOINHERIT PASSWORD :'pgpass';
CREATE ROLE authenticated NOLOGIN NOINHERIT PASSWORD :'pgpass';
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS PASSWORD :'pgpass';
CREATE ROLE dashboard_user NOLOGIN CREATEDB CREATEROLE REPLICATION PASSWORD :'pgpass';

CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD :'pgpass';
CREATE ROLE pgbouncer LOGIN PASSWORD :'pgpass';
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE PASSWORD :'pgpass';
CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE PASSWORD :'pgpass';
CREATE ROLE supabase_functions_admin LOGIN NOINHERIT CREATEROLE PASSWORD :'pgpass';
CREATE ROLE supabase_replication_admin LOGIN REPLICATION PASSWORD :'pgpass';
CREATE ROLE supabase_read_only_user LOGIN BYPASSRLS;

GRANT anon, authenticated, service_role TO authenticator;
GRANT anon, authenticated, service_role TO postgres;

CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
CREATE SCHEMA supabase_functions AUTHORIZATION supabase_admin;
CREATE SCHEMA extensions;
