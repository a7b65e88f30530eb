"""Which names are local paths and which are Hub ids: on a single-user page, and on a shared server.

On a page without sign-in a bare `org/name` is a local folder when one of that name exists here, else a Hub
id: its user reads this disk anyway. On a shared server (any sign-in configured) that guess would tell a
signed-in user which folders exist on the server (refused vs. taken as a Hub id), so there a bare relative
`org/name` (or `name`) is always a Hub id, whatever the disk holds, in the page, the API, the data worker
and the trainer alike; a local folder is named by its full path (or `./org/name`) inside the allowed
folders. Standard library only: the lowest layer, imported by the dataset sources, the model loader and
the access policy.
"""

from __future__ import annotations

import os
import re
from typing import Optional

AUTH_ENV = "TUNEDECK_AUTH"  # "user:password,...": any sign-in makes the server shared
USERS_FILE_ENV = "TUNEDECK_USERS_FILE"  # a file of name:scrypt-hash lines (python -m webui.auth add-user)
SHARED_ENV = "TUNEDECK_SHARED"  # "1": set for the workers of a shared server, which never see its passwords
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")  # what the dataset loader reads
# A Hub repository id as the Hub spells them: one optional namespace, letters, digits, `-`, `_`, `.`.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
_HF_OAUTH_VARIABLES = ("SPACE_ID", "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL")


def hf_oauth_available(environ: dict[str, str]) -> bool:
    """On a Space whose README asks for `hf_oauth: true`: the Space then sets these variables (and
    SYSTEM=spaces, which Gradio's OAuth checks too)."""
    return environ.get("SYSTEM") == "spaces" and all(environ.get(name) for name in _HF_OAUTH_VARIABLES)


def sign_in_configured(environ: Optional[dict[str, str]] = None) -> bool:
    """Whether people sign in to this server (passwords, a users file, or Hugging Face on a Space): the
    server is then shared. The trainer's and the data worker's processes inherit the same environment."""
    environ = environ if environ is not None else dict(os.environ)
    return bool(environ.get(AUTH_ENV, "").strip() or environ.get(USERS_FILE_ENV, "").strip()
                or environ.get(SHARED_ENV) == "1" or hf_oauth_available(environ))


def hub_id_shaped(name: str) -> bool:
    """`org/name` or `name` as the Hub spells ids, not a data file name (`x.jsonl`), not `.`/`..`."""
    name = name.strip()
    return (bool(_HUB_ID.fullmatch(name)) and not name.lower().endswith(FILE_SUFFIXES)
            and ".." not in name and not name.endswith("."))


def hub_id_only(name: str, environ: Optional[dict[str, str]] = None) -> bool:
    """On a shared server, a Hub-id-shaped relative name is a Hub id and the disk is never asked about it."""
    return hub_id_shaped(name) and sign_in_configured(environ)


def shadowed_locally(name: str) -> bool:
    """A Hub id that a library would load from a local folder of the same name (relative to the process's
    working directory) instead of the Hub. On a shared server the loader then answers as for a Hub id that
    does not exist, so the answer says nothing about this disk."""
    return hub_id_only(name) and os.path.lexists(name.strip())
