"""The database roles that share POSTGRES_PASSWORD in a Supabase deployment."""

SHARED_PASSWORD_ROLES: tuple[str, ...] = (
    "anon",
    "authenticated",
    "authenticator",
    "dashboard_user",
    "pgbouncer",
    "postgres",
    "service_role",
    "supabase_admin",
    "supabase_auth_admin",
    "supabase_functions_admin",
    "supabase_replication_admin",
    "supabase_storage_admin",
)
"""In the order upstream's `utils/db-passwd.sh` sets them. `supabase_read_only_user` is
left out on purpose: it has no password."""
