"""A Supabase deployment as rotator sees it: a directory with `.env` and compose files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from core.compose import ComposeProject
from core.envfile import EnvFile
from core.errors import InputError
from core.journal import Journal

STATE_DIR_NAME = ".rotator"


@dataclass(frozen=True)
class Deployment:
    """The deployment directory and its `.env`; compose's model of it on first use.

    Asking compose takes a few tenths of a second, so it is asked only by those that
    need the model, and a plan asks it about the current and the new `.env` at once
    (`compose_with`).
    """

    directory: Path
    env: EnvFile

    @classmethod
    def load(cls, directory: Path | str) -> Deployment:
        path = Path(directory).expanduser()
        if not path.is_dir():
            raise InputError(
                f"{path}: no such directory (give --project the Supabase docker directory)"
            )
        path = path.resolve()
        env_path = path / ".env"
        if not env_path.is_file():
            raise InputError(f"{env_path}: no .env file; is this the Supabase docker directory?")
        return cls(directory=path, env=EnvFile.read(env_path))

    @cached_property
    def compose(self) -> ComposeProject:
        """Compose's model of the deployment with the current `.env`."""
        return ComposeProject.load(self.directory, values=self.values())

    def compose_with(self, other: EnvFile) -> ComposeProject:
        """Compose's model of the deployment with `other` as its `.env` (the one a
        commit would write). Asks about the current `.env` at the same time when
        `compose` was not asked yet."""
        if "compose" in self.__dict__:
            return self.compose.resolved_with(other)
        current, resolved = ComposeProject.load_with(self.directory, other, values=self.values())
        self.__dict__["compose"] = current  # where cached_property keeps its value
        return resolved

    @property
    def env_path(self) -> Path:
        return self.directory / ".env"

    @property
    def state_dir(self) -> Path:
        """Journal, backups, lock and audit log live here (0700), created on first rotation."""
        return Path(os.environ.get("ROTATOR_STATE_DIR") or self.directory / STATE_DIR_NAME)

    @property
    def journal(self) -> Journal:
        """The journal of the rotation open on this deployment, if any."""
        return Journal(self.state_dir / "journal.json")

    def ensure_state_dir(self) -> Path:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.state_dir / "backups").mkdir(mode=0o700, exist_ok=True)
        return self.state_dir

    def values(self) -> dict[str, str]:
        return self.env.as_dict()

    def database_service(self) -> str:
        """The compose service that runs the database: POSTGRES_HOST when it names one
        (upstream's is `db`), else `db`."""
        host = self.values().get("POSTGRES_HOST") or "db"
        return host if host in self.compose.service_names() else "db"

    def reload(self) -> Deployment:
        return Deployment.load(self.directory)
