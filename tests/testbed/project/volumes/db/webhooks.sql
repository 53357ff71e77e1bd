-- Testbed fallback for upstream's volumes/db/webhooks.sql (see _supabase.sql), reduced to
-- what a rotation touches: pg_net, the supabase_functions schema and its admin role, a
-- LOGIN role created without a password (roles.sql gives it one).
BEGIN;
  CREATE EXTENSION IF NOT EXISTS pg_net SCHEMA extensions;
  CREATE SCHEMA supabase_functions AUTHORIZATION supabase_admin;
  GRANT USAGE ON SCHEMA supabase_functions TO postgres, anon, authenticated, service_role;
  CREATE TABLE supabase_functions.migrations (
    version text PRIMARY KEY,
    inserted_at timestamptz NOT NULL DEFAULT NOW()
  );
  CREATE TABLE supabase_functions.hooks (
    id bigserial PRIMARY KEY,
    hook_table_id integer NOT NULL,
    hook_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT NOW(),
    request_id bigint
  );
  DO $$
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_functions_admin') THEN
      CREATE USER supabase_functions_admin NOINHERIT CREATEROLE LOGIN NOREPLICATION;
    END IF;
  END
  $$;
  GRANT ALL PRIVILEGES ON SCHEMA supabase_functions TO supabase_functions_admin;
  GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA supabase_functions TO supabase_functions_admin;
  GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA supabase_functions TO supabase_functions_admin;
  ALTER USER supabase_functions_admin SET search_path = "supabase_functions";
  ALTER TABLE supabase_functions.migrations OWNER TO supabase_functions_admin;
  ALTER TABLE supabase_functions.hooks OWNER TO supabase_functions_admin;
  GRANT supabase_functions_admin TO postgres;
  GRANT USAGE ON SCHEMA net TO supabase_functions_admin, postgres, anon, authenticated, service_role;
  INSERT INTO supabase_functions.migrations (version) VALUES ('initial');
COMMIT;
