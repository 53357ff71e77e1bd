\set pguser `echo "$POSTGRES_USER"`

-- The database Supabase keeps its own data in (pooler tenants, analytics)
CREATE DATABASE _supabase WITH OWNER :pguser;
