-- Testbed fallback for upstream's volumes/db/_supabase.sql (used when ../shared is absent;
-- Testbed.create() mounts upstream's own file when it is there): the database Supabase
-- keeps its own data in (pooler tenants, analytics), owned by the bootstrap superuser.
\set pguser `echo "$POSTGRES_USER"`

SELECT 'CREATE DATABASE postgres WITH OWNER ' || :'pguser'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'postgres')\gexec

CREATE DATABASE _supabase WITH OWNER :pguser;
