"""Stand-ins for the Supabase services no registry ships, as the testbed runs them.

Each one behaves toward secrets like the service it replaces (see ../README.md for what
each models): it reads its environment once at start, waits as long as the real service
takes to become ready, logs in to the database with the credentials it was given (503 on
its health route when refused), and verifies tokens by the rules of the real service
(`tokens.py`). Every stand-in also answers /fingerprints: sha256[:16] of each
environment value, so tests can see what a container started with without the values.

    standin ROLE --port PORT

Python 3 standard library, plus Debian's psycopg2 and cryptography (in the image).
"""
