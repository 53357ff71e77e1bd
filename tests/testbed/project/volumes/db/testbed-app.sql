-- Testbed: the application's own table, which the official client reads through the
-- gateway before and after every rotation (tests/testbed/client_probe.py). Row level
-- security as Supabase's guides set it up: everyone may read, signed-in users write their
-- own rows.
create table public.items (
    id bigint generated always as identity primary key,
    name text not null,
    owner uuid default auth.uid(),
    created_at timestamptz not null default now()
);
alter table public.items enable row level security;
create policy "items are readable by everyone" on public.items for select using (true);
create policy "users add their own items" on public.items for insert to authenticated
    with check (owner = auth.uid());
insert into public.items (name) values ('first item'), ('second item');
