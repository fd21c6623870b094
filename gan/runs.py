"""Run folders shared by the DCGAN and SimGAN trainers: RUN_DIR/config.json holds a run's settings."""
import json
from pathlib import Path


def read_run_config(run_dir, config_cls, kind, error=ValueError):
    """The settings saved in RUN_DIR/config.json as a `config_cls` (which has `from_dict`);
    a folder without one, or an unreadable one, raises `error` with one line naming it."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise error(f"{run_dir}: not a {kind} run folder (no config.json)")
    try:
        return config_cls.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise error(f"{path}: unreadable run configuration ({exc})") from None
