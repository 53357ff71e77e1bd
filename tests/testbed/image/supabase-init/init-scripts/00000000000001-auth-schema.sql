-- The auth schema as the image leaves it for GoTrue, owned by supabase_auth_admin. GoTrue's
-- own migrations add the rest at its first start (the auth stand-in creates auth.sessions
-- and the columns it needs the same way).

create schema if not exists auth authorization supabase_admin;

create table auth.users (
    instance_id uuid,
    id uuid not null primary key,
    aud varchar(255),
    role varchar(255),
    email varchar(255) unique,
    encrypted_password varchar(255),
    confirmed_at timestamptz,
    invited_at timestamptz,
    confirmation_token varchar(255),
    confirmation_sent_at timestamptz,
    recovery_token varchar(255),
    recovery_sent_at timestamptz,
    email_change_token varchar(255),
    email_change varchar(255),
    email_change_sent_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb,
    raw_user_meta_data jsonb,
    is_super_admin bool,
    created_at timestamptz,
    updated_at timestamptz
);

create table auth.refresh_tokens (
    instance_id uuid,
    id bigserial primary key,
    token varchar(255),
    user_id varchar(255),
    revoked bool,
    created_at timestamptz,
    updated_at timestamptz
);
create index refresh_tokens_token_idx on auth.refresh_tokens using btree (token);

create table auth.instances (
    id uuid not null primary key,
    uuid uuid,
    raw_base_config text,
    created_at timestamptz,
    updated_at timestamptz
);

create table auth.audit_log_entries (
    instance_id uuid,
    id uuid not null primary key,
    payload json,
    created_at timestamptz
);

create table auth.schema_migrations (version varchar(255) not null primary key);

-- What RLS policies call: the claims PostgREST put in request.jwt.claims.
create function auth.uid() returns uuid language sql stable as $$
    select nullif(current_setting('request.jwt.claims', true)::jsonb ->> 'sub', '')::uuid
$$;
create function auth.role() returns text language sql stable as $$
    select current_setting('request.jwt.claims', true)::jsonb ->> 'role'
$$;
create function auth.email() returns text language sql stable as $$
    select current_setting('request.jwt.claims', true)::jsonb ->> 'email'
$$;

grant usage on schema auth to anon, authenticated, service_role;
grant execute on function auth.uid(), auth.role(), auth.email()
    to anon, authenticated, service_role;

create role supabase_auth_admin login noinherit createrole;
grant all privileges on schema auth to supabase_auth_admin;
grant all privileges on all tables in schema auth to supabase_auth_admin;
grant all privileges on all sequences in schema auth to supabase_auth_admin;
alter table auth.users owner to supabase_auth_admin;
alter table auth.refresh_tokens owner to supabase_auth_admin;
alter table auth.instances owner to supabase_auth_admin;
alter table auth.audit_log_entries owner to supabase_auth_admin;
alter table auth.schema_migrations owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter schema auth owner to supabase_auth_admin;
alter role supabase_auth_admin set search_path = "auth";
