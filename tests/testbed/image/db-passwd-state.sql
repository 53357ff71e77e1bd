-- Testbed: the state upstream's utils/db-passwd.sh leaves, applied once after the image's
-- init (see db-entrypoint.sh): its twelve roles share POSTGRES_PASSWORD.
-- supabase_read_only_user is not among them, as in db-passwd.sh.
\set pgpass `echo "$POSTGRES_PASSWORD"`

alter user anon with password :'pgpass';
alter user authenticated with password :'pgpass';
alter user authenticator with password :'pgpass';
alter user dashboard_user with password :'pgpass';
alter user pgbouncer with password :'pgpass';
alter user postgres with password :'pgpass';
alter user service_role with password :'pgpass';
alter user supabase_admin with password :'pgpass';
alter user supabase_auth_admin with password :'pgpass';
alter user supabase_functions_admin with password :'pgpass';
alter user supabase_replication_admin with password :'pgpass';
alter user supabase_storage_admin with password :'pgpass';
