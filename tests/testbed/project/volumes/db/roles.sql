-- NOTE: change to your own passwords for production environments
-- Testbed: upstream's volumes/db/roles.sql could not be read at a current commit (see
-- ../shared/reference/supabase-docker/SOURCE.md), so this is always the testbed's own, in
-- the shape most installs carry. Testbed.create(read_only_password=True) adds
-- supabase_read_only_user, as some installs do.
\set pgpass `echo "$POSTGRES_PASSWORD"`

ALTER USER authenticator WITH PASSWORD :'pgpass';
ALTER USER pgbouncer WITH PASSWORD :'pgpass';
ALTER USER supabase_auth_admin WITH PASSWORD :'pgpass';
ALTER USER supabase_functions_admin WITH PASSWORD :'pgpass';
ALTER USER supabase_storage_admin WITH PASSWORD :'pgpass';
