"""The app's command line, run inside the app environment by ``launcher.py``.

  python -m app serve [--host H] [--port P] [--share] [--auth u:p] [--data-dir D] [--no-browser]
  python -m app setup            build the default architecture's environment
  python -m app test [pytest args]   set up, then run ruff, mypy and the tests
  python -m app worker --broker-url redis://H:6379/0 --database-url postgresql+psycopg://... [--queues Q,...]
                       [--slots N] [--name HOST] [--shared-dir D]   run jobs of a front on this host
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

from pydantic import ValidationError

from app.settings import PROJECT_ROOT, Settings, build_settings


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="where envs, characters, outputs and logs live")
    parser.add_argument("--host", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve on (default 7860)")
    parser.add_argument("--share", action="store_true", default=None, help="ask Gradio for a public share link")
    parser.add_argument("--auth", help="user:password required to use the app (visible to other local users: prefer "
                        "VOICEGEN_AUTH or --auth-file)")
    parser.add_argument("--auth-file", help="a file of user:password lines")
    parser.add_argument("--admins", help="comma-separated users who may operate the app (runtime controls, model management)")
    parser.add_argument("--no-browser", dest="open_browser", action="store_false", default=None)
    parser.add_argument("--insecure-public", action="store_true", default=None,
                        help="serve beyond this machine with neither logins nor API keys (refused otherwise)")


def settings_from(args: argparse.Namespace) -> Settings:
    flags: Dict[str, Any] = {
        key: getattr(args, key, None) for key in ("data_dir", "host", "port", "share", "auth", "auth_file", "admins", "open_browser",
                                                "insecure_public", "broker_url", "jobs_database_url", "shared_dir",
                                                "worker_queues", "worker_slots", "host_name", "job_lease_s")
    }
    return build_settings(os.environ, flags)


def setup(settings: Settings) -> None:
    from app.bootstrap import build_env

    print("Preparing the %s environment..." % settings.default_architecture, flush=True)
    built = build_env(settings, settings.default_architecture, lambda line: print("  " + line, flush=True))
    print("  %s environment (%s): %s" % (settings.default_architecture, built.kind, built.location or built.interpreter), flush=True)


def manage_keys(settings: Settings, action: str, owner: Optional[str], key_id: Optional[str]) -> int:
    """The operator's side of API keys (``app.api_keys``): what it did, or why not, in one line each."""
    import time

    from app.api_keys import ApiKeyError, ApiKeyStore

    store = ApiKeyStore(settings.data_dir)
    try:
        if action == "create":
            if not owner:
                print("keys create needs --owner NAME (whose history and quotas the key's jobs join)", file=sys.stderr)
                return 2
            entry, token = store.create(owner)
            print("API key %s for %s (shown once: keep it now; only its hash is stored):\n%s" % (entry.id, entry.owner, token))
        elif action == "revoke":
            if not key_id:
                print("keys revoke needs the key's id (see keys list)", file=sys.stderr)
                return 2
            entry = store.revoke(key_id)
            print("API key %s of %s revoked" % (entry.id, entry.owner))
        else:
            def when(at: float) -> str:
                return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))

            for entry in store.listed():
                state = "revoked %s" % when(entry.revoked_at) if entry.revoked_at else "active"
                print("%s  %-24s created %s  %s" % (entry.id, entry.owner, when(entry.created_at), state))
    except ApiKeyError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


def run_tests(settings: Settings, pytest_args: List[str]) -> int:
    setup(settings)
    env = dict(os.environ, VOICEGEN_ENVS_DIR=str(settings.built_envs_dir))
    steps = [
        ("ruff", [sys.executable, "-m", "ruff", "check", "."]),
        ("mypy", [sys.executable, "-m", "mypy"]),
        ("pytest", [sys.executable, "-m", "pytest", *pytest_args]),
    ]
    for name, command in steps:
        print("== %s ==" % name, flush=True)
        code = subprocess.call(command, cwd=str(PROJECT_ROOT), env=env)
        if code != 0:
            print("%s failed (exit %d)" % (name, code), flush=True)
            return code
    return 0


def run_worker_host(settings: Settings) -> int:
    from app.single_instance import AlreadyRunning, hold_data_folder
    from app.worker_host import run_worker

    try:
        folder = hold_data_folder(settings.data_dir, "")  # a host's supervisor owns its data folder like an app's
    except AlreadyRunning as running:
        print("%s\n(a worker host needs its own --data-dir)" % running, flush=True)
        return 2
    try:
        return run_worker(settings)
    finally:
        folder.release()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    for name in ("serve", "setup", "test"):
        add_common_flags(sub.add_parser(name))
    keys = sub.add_parser("keys", help="API keys for programs on the HTTP routes: create --owner NAME, list, revoke ID")
    add_common_flags(keys)
    keys.add_argument("action", choices=("create", "list", "revoke"))
    keys.add_argument("key_id", nargs="?", help="the key to revoke (its id, from `keys list`)")
    keys.add_argument("--owner", help="whom a new key speaks for (its jobs join that owner's history and quotas)")
    worker = sub.add_parser("worker", help="run a front's jobs on this host (the supervisor inside a Celery worker)")
    add_common_flags(worker)
    worker.add_argument("--broker-url", dest="broker_url", help="the front's Redis, e.g. redis://front:6379/0")
    worker.add_argument("--database-url", dest="jobs_database_url", help="the job store every host shares (PostgreSQL URL)")
    worker.add_argument("--queues", dest="worker_queues", help="queues to take: generate.cpu, generate.gpu.<architecture>, "
                                                               "download.io (comma-separated; default generate.cpu)")
    worker.add_argument("--slots", dest="worker_slots", type=int, help="jobs at once on this host (default 1)")
    worker.add_argument("--name", dest="host_name", help="this host's name (default: the machine's)")
    worker.add_argument("--shared-dir", dest="shared_dir", help="the folder of job files every host mounts at the same path")
    worker.add_argument("--lease-s", dest="job_lease_s", type=float, help="a running job's lease (default 30 s)")
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # until settings are read
    command = args.command or "serve"
    if rest and command != "test":
        parser.error("unrecognised arguments: %s" % " ".join(rest))
    try:
        settings = settings_from(args)
    except ValidationError as exc:  # a wrong value in config.toml, a VOICEGEN_* variable or a flag: say which
        problems = "; ".join("%s: %s (got %r)" % (".".join(str(part) for part in error["loc"]), error["msg"], error.get("input"))
                             for error in exc.errors())
        parser.exit(2, "invalid setting: %s\n" % problems)
    from app.logs import configure

    configure(settings.log_format)
    if command == "setup":
        setup(settings)
        return 0
    if command == "keys":
        return manage_keys(settings, args.action, args.owner, args.key_id)
    if command == "test":
        return run_tests(settings, rest)
    if command == "worker":
        return run_worker_host(settings)
    from app.single_instance import AlreadyRunning, hold_data_folder
    from app.starting_page import StartingPage

    try:
        folder = hold_data_folder(settings.data_dir, settings.url)  # held until this process ends
    except AlreadyRunning as running:  # a second launch: point at the first, touch nothing
        print("%s\n(start another with its own --data-dir)" % running, flush=True)
        if settings.open_browser and running.url:
            import webbrowser

            webbrowser.open(running.url)
        return 0
    page = StartingPage(settings.host, settings.port)  # the address answers at once; the app takes it over when loaded
    if page.start():
        print("Voice workstation: %s (starting...)" % settings.url, flush=True)
    try:
        setup(settings)
        from app.server import serve

        serve(settings, page.stop)
    finally:
        page.stop()
        folder.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
