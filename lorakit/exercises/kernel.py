"""The grader's kernel session: the notebook client, silent requests, the package copy, clean-up.

Why widget cells used to hang the grader
----------------------------------------
``nbclient`` mimics a front end's ``Output`` widget: when a widget cell (``ipywidgets.interact``)
displays into one, the client sends the captured output back to the kernel as a ``comm_msg`` on
the shell channel, from the coroutine that reads IOPub, while another coroutine is waiting on the
same shell socket for the cell's ``execute_reply``. ``jupyter_client``'s ``Session.send`` does
that send through a plain, blocking shadow of the asyncio socket. A ZeroMQ socket's file
descriptor is edge-triggered: any operation on the socket (this send included) processes its
pending commands and so consumes the edge that announced the reply, which had just arrived. The
asyncio wrapper re-checks ``ZMQ_EVENTS`` after its own sends, but the shadow socket bypasses it,
so the event loop is never woken and the reply sits unread until the wait's timeout (600 s by
default) fires, finds it, and the cell "completes". Whether it happens depends on which of the two
messages wins the race, hence about one run in two.

:class:`GradingClient` sends those comm messages through the asyncio socket itself, whose send
path re-checks the socket's events and wakes the waiting reader: widget cells then run in the
time their code takes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.jsonutil import json_clean
from nbclient.output_widget import OutputWidget

from lorakit.exercises.course import Expected

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # lorakit/
TOKEN_ENV = "LORAKIT_GRADER_TOKEN"


class _OutputWidget(OutputWidget):
    """nbclient's Output-widget mimic, sending its state through the asyncio shell socket."""

    def _publish_msg(
        self,
        msg_type: str,
        data: dict | None = None,
        metadata: dict | None = None,
        buffers: list | None = None,
        **keys: Any,
    ) -> None:
        content = json_clean(dict(data=data or {}, comm_id=self.comm_id, **keys))
        session = self.kernel_client.session
        msg = session.msg(
            msg_type, content=content, parent=self.parent_header, metadata=metadata or {}
        )
        # Not Session.send: see the module docstring. send_multipart on the asyncio socket sends
        # at once when it can and then re-checks the socket's events for the waiting reader.
        self.kernel_client.shell_channel.socket.send_multipart(session.serialize(msg))


class GradingClient(NotebookClient):
    """``NotebookClient`` for grading: widget cells do not hang, timed-out cells are remembered.

    Use with ``interrupt_on_timeout=True`` and an ``error_on_timeout`` reply, so that a cell that
    runs too long is interrupted and the notebook goes on with the next cell.
    """

    def __init__(self, nb: Any, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self.widget_registry = {"@jupyter-widgets/output": {"OutputModel": _OutputWidget}}
        self.timeouts = 0

    async def _async_handle_timeout(self, timeout: int, cell: Any = None) -> None | dict:
        self.timeouts += 1
        return await super()._async_handle_timeout(timeout, cell)

    async def async_request(self, code: str, timeout: float) -> tuple[dict | None, bool]:
        """Run ``code`` silently (no output, no history, no cell events): ``(reply content, late)``.

        If no reply comes within ``timeout`` seconds the kernel is interrupted and given ten more
        seconds; ``late`` says so, and the content is ``None`` if even then no reply came.
        Raises ``DeadKernelError`` if the kernel died.
        """
        assert self.kc is not None and self.km is not None
        msg_id = self.kc.execute(
            code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False
        )
        late = False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if late:
                    return None, True
                late = True
                await self.km.interrupt_kernel()
                deadline = time.monotonic() + 10.0
                continue
            try:
                msg = await self.kc.shell_channel.get_msg(timeout=min(left, 1.0))
            except Empty:
                if not await self.kc.is_alive():
                    raise DeadKernelError("Kernel died") from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"], late

    async def async_responsive(self, timeout: float = 10.0) -> bool:
        """Whether the kernel answers an empty request within ``timeout`` seconds."""
        try:
            content, late = await self.async_request("", timeout)
        except DeadKernelError:
            return False
        return content is not None and not late

    def kernel_pgid(self) -> int | None:
        """The kernel's process group (jupyter_client starts each kernel in a session of its
        own)."""
        provisioner = getattr(self.km, "provisioner", None)
        return getattr(provisioner, "pgid", None)


def package_files(package_dir: Path | None = None) -> dict[str, bytes]:
    """Every file of the package (``{relative path: bytes}``), caches left out.

    ``package_dir`` defaults to the installed lorakit (``PACKAGE_DIR``, read at call time).
    """
    package_dir = Path(package_dir or PACKAGE_DIR)
    return {
        p.relative_to(package_dir).as_posix(): p.read_bytes()
        for p in sorted(package_dir.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def digest(files: dict[str, bytes]) -> dict[str, str]:
    """SHA-256 of each file."""
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def changed_files(before: dict[str, str], package_dir: Path | None = None) -> list[str]:
    """Files of the package added, removed or edited since ``before`` was taken."""
    now = digest(package_files(package_dir))
    return sorted(rel for rel in set(before) | set(now) if before.get(rel) != now.get(rel))


def write_package_copy(files: dict[str, bytes], parent: Path) -> Path:
    """Write a private copy of the package under ``parent/lorakit``; returns ``parent``.

    The shipped data set (``data/e2e`` beside the installed package) is linked, read-only data
    rather than code, at ``parent/data/e2e``, where the copy's loaders look for it, so checkers
    that read the task's records (chapter 6's) work from the copy too.
    """
    for rel, data in files.items():
        path = parent / "lorakit" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    from lorakit.data.e2e_load import DATA_DIR

    if DATA_DIR.is_dir():
        (parent / "data").mkdir(exist_ok=True)
        (parent / "data" / "e2e").symlink_to(DATA_DIR, target_is_directory=True)
    return parent


def kill_leftovers(pgid: int | None, token: str) -> int:
    """Kill what the graded notebook left running; returns how many processes were signalled.

    The kernel's process group is killed (what ``subprocess`` or ``os.system`` started from the
    notebook and did not detach), then, on Linux, every process whose environment still carries
    the grading token (what detached into a session of its own but kept the environment).
    """
    killed = 0
    if pgid and pgid != os.getpgrp():
        try:
            os.killpg(pgid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            pass
    needle = f"{TOKEN_ENV}={token}".encode()
    proc = Path("/proc")
    if token and proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
            except (OSError, ValueError):
                continue
    return killed


async def run_and_recheck(
    client: GradingClient,
    nb: Any,
    expected: list[Expected],
    package: Path,
    timeout: float,
    env: dict[str, str],
) -> tuple[dict, str | None, list[int]]:
    """Run the notebook in a fresh kernel, then check its exercises there (see grade.py).

    ``package`` holds the grader's private copy of lorakit (``package/lorakit``); ``env`` is the
    kernel's environment and carries the grading token. Returns ``(outcomes, stopped, timed_out)``:
    the JSON each re-check wrote, per exercise name; why the run stopped early, or ``None``; the
    indices of the cells interrupted at the timeout.
    """
    loader = package / "lorakit" / "exercises" / "_in_kernel.py"
    module = f"_lorakit_grader_{secrets.token_hex(8)}"
    results_dir = Path(tempfile.mkdtemp(prefix="lorakit-results-"))
    outcomes: dict[str, dict] = {}
    stopped, timed_out = None, []
    try:
        async with client.async_setup_kernel(env=env):
            client.pgid = client.kernel_pgid()
            setup = (
                "def _lorakit_grader_setup():\n"
                "    import importlib.util, sys\n"
                f"    spec = importlib.util.spec_from_file_location({module!r}, {str(loader)!r})\n"
                "    mod = importlib.util.module_from_spec(spec)\n"
                "    spec.loader.exec_module(mod)\n"
                f"    sys.modules[{module!r}] = mod\n"
                f"    mod.install(get_ipython(), { ({e.name: e.obj for e in expected})!r})\n"
                "_lorakit_grader_setup()\n"
                "del _lorakit_grader_setup\n"
            )
            reply, _ = await client.async_request(setup, 60)
            if reply is None or reply.get("status") != "ok":
                detail = f"{reply.get('ename')}: {reply.get('evalue')}" if reply else "no reply"
                return {}, f"the grader could not set up the kernel ({detail})", []
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                before = client.timeouts
                try:
                    await client.async_execute_cell(
                        cell, index, execution_count=client.code_cells_executed + 1
                    )
                except DeadKernelError:
                    stopped = f"the kernel died in cell {index}"
                    break
                if client.timeouts > before:
                    timed_out.append(index)
                    if not await client.async_responsive(5.0):
                        stopped = (
                            f"cell {index} ran past the {timeout:g} s limit and did not stop "
                            "when interrupted; the cells after it were not run"
                        )
                        kill_leftovers(client.pgid, env[TOKEN_ENV])  # no use asking it to shut down
                        break
            if stopped is None:
                for n, e in enumerate(expected):
                    out = results_dir / f"{n}.json"
                    code = (
                        f"__import__('sys').modules[{module!r}].recheck("
                        f"{e.name!r}, {str(out)!r}, {str(package)!r})"
                    )
                    try:
                        reply, late = await client.async_request(code, timeout)
                    except DeadKernelError:
                        stopped = f"the kernel died while the grader checked {e.name}"
                        break
                    if out.is_file():
                        outcomes[e.name] = json.loads(out.read_text(encoding="utf-8"))
                    if late:
                        outcomes[e.name] = {
                            "passed": False,
                            "error": (
                                f"the check did not finish within {timeout:g} s "
                                "(does your code return?)"
                            ),
                        }
                    if reply is None:
                        stopped = (
                            "the kernel stopped answering while the grader checked the exercises"
                        )
                        break
    finally:
        kill_leftovers(getattr(client, "pgid", None), env[TOKEN_ENV])
        shutil.rmtree(results_dir, ignore_errors=True)
    return outcomes, stopped, timed_out
