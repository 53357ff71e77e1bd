-- The storage schema as the image leaves it for the Storage API, owned by
-- supabase_storage_admin.

create schema if not exists storage authorization supabase_admin;
grant usage on schema storage to postgres, anon, authenticated, service_role;
alter default privileges in schema storage grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges in schema storage grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges in schema storage grant all on sequences to postgres, anon, authenticated, service_role;

create table storage.buckets (
    id text not null primary key,
    name text not null unique,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now()
);

create table storage.objects (
    id uuid not null default extensions.uuid_generate_v4() primary key,
    bucket_id text references storage.buckets (id),
    name text,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    last_accessed_at timestamptz default now(),
    metadata jsonb
);
alter table storage.objects enable row level security;

create table storage.migrations (
    id integer primary key,
    name varchar(100) unique not null,
    hash varchar(40) not null,
    executed_at timestamp default current_timestamp
);

create role supabase_storage_admin login noinherit createrole;
grant all privileges on schema storage to supabase_storage_admin;
grant all privileges on all tables in schema storage to supabase_storage_admin;
grant all privileges on all sequences in schema storage to supabase_storage_admin;
alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
alter table storage.migrations owner to supabase_storage_admin;
alter schema storage owner to supabase_storage_admin;
alter role supabase_storage_admin set search_path = "storage";
