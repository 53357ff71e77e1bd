"""A Supabase deployment as rotator sees it: a directory with `.env` and compose files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.compose import ComposeProject
from core.envfile import EnvFile
from core.errors import InputError
from core.journal import Journal

STATE_DIR_NAME = ".rotator"


@dataclass(frozen=True)
class Deployment:
    directory: Path
    env: EnvFile
    compose: ComposeProject

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
        env = EnvFile.read(env_path)
        return cls(directory=path, env=env, compose=ComposeProject.load(path, env.as_dict()))

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

    def reload(self) -> Deployment:
        return Deployment.load(self.directory)
