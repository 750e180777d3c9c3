"""Every fenced code block in README.md and docs/*.md is checked, so the docs
cannot drift from the code.

How docs are tested (the convention for authors; docs/index.md repeats it):

- ```python blocks of one page run in order, as one script, in a fresh
  subprocess whose working directory is an empty temporary directory.
  ``TASKQ_REDIS_URL`` points at the test session's server and
  ``TASKQ_NAMESPACE`` is unique to the page, so ``TaskQ("shop")`` works as
  written. A python block must not name a server URL in code (comments and
  ```text blocks may): it would reach a server other than the test's.
- A ```python block whose first line is ``# NAME.py`` (or ``# pkg/NAME.py``)
  is written to that file in the page's directory instead of being run, so
  later blocks can import it and a worker can serve it.
- ```bash / ```sh / ```console blocks: each command line (in ```console,
  the lines starting with ``$ ``; the other lines are output) is checked by
  its program. ``taskq ...`` is parsed with the real click command, so a
  renamed command or flag, a bad value or an extra argument fails; read-only
  commands (``--help``, ``status`` without ``--watch``, ``periodic list``,
  ``jobs``, ``failed list``, ``recover``) are also run, after the page's
  python script, in its directory, and must exit 0. ``python -m benchmarks``
  is parsed by the benchmarks' own parser; ``python -m MODULE`` must exist
  and accept every ``--flag`` given; ``python FILE.py`` must exist (examples
  are run by tests/test_examples.py); ``pip install`` may name only extras
  pyproject.toml defines. ``systemctl``, ``journalctl``, ``docker``,
  ``kubectl``, ``kill``, ``curl``, ``cd`` and ``export`` are recognised and not run.
- A ```bash block whose info string adds ``background`` (```bash background)
  holds long-running commands the page needs (a ``taskq worker``): the test
  starts each of them in the page's directory before the python script runs,
  waits for a worker to register, and stops them (SIGTERM) at the end.
- ```ini (systemd units) must parse and their ``ExecStart`` must parse as a
  command; ```dockerfile instructions must be known and their
  ``RUN``/``CMD``/``ENTRYPOINT`` commands must parse; ```yaml must load and
  every taskq command in it (``command``/``args``, ``exec`` probes,
  compose ``command`` and ``healthcheck``) must parse. A Kubernetes ``httpGet`` probe must
  target the container's ``--metrics-port`` at ``/metrics``.
- ```text blocks are output or reference and are not checked.
- Any other block (no language, another language) fails the test, naming the
  file and line.

New pages under docs/ are picked up by the glob: nothing to register.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tokenize
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from taskq import TaskQ
from taskq_cli.main import main as taskq_main
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# The integration pages' blocks need their frameworks' programs around them
# (an event loop, a Django project, a tracer provider): tests/test_docs_integrations.py
# runs them or checks them against the tested example and project.
RUN_ELSEWHERE = {"asyncio.md": "tests/test_docs_integrations.py", "django.md": "tests/test_docs_integrations.py",
                 "fastapi.md": "tests/test_docs_integrations.py", "opentelemetry.md": "tests/test_docs_integrations.py",
                 "workflows.md": "tests/workflows/test_docs.py", "flow-control.md": "tests/storage/test_flow_docs.py",
                 "deployment-scaling.md": "tests/unit/test_deployment_docs.py"}

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
FILE_HEADER = re.compile(r"^#\s*(?P<name>[A-Za-z_][\w/]*\.py)\s*$")
SHELL_LANGS = {"bash", "sh", "console", "shell"}
SAFE_TASKQ = {("status",), ("periodic", "list"), ("jobs",), ("failed", "list"), ("recover",)}
NOT_RUN_TOOLS = {"systemctl", "journalctl", "docker", "kubectl", "kill", "curl", "cd", "export"}
DOCKERFILE_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                           "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
PAGE_TIMEOUT = 90


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    words: tuple[str, ...]  # the info string's further words
    code: str

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}"


def rel(path: Path) -> str:
    """A page's name in messages: relative to the repository."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return path.name


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the line of each opening fence."""
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m["fence"], m["info"].split(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and not lines[i].strip().strip(fence[0])):
            body.append(lines[i][len(m["indent"]):] if lines[i].startswith(m["indent"]) else lines[i])
            i += 1
        if i >= len(lines):
            raise AssertionError(f"{rel(path)}:{start + 1}: code block never closed")
        out.append(Block(path, start + 1, info[0].lower() if info else "", tuple(info[1:]), "\n".join(body) + "\n"))
        i += 1
    return out


# ---------------------------------------------------------------- command checks


class DocError(AssertionError):
    pass


def check_taskq(argv: list[str], where: str) -> tuple[str, ...]:
    """Parse ``taskq ARGV`` with the real click commands (no callback runs);
    returns the subcommand path, e.g. ``("periodic", "list")``."""
    cmd: click.Command = taskq_main
    ctx: click.Context | None = None
    name, args, path = "taskq", list(argv), []
    try:
        while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
            group_ctx = click.Context(cmd, info_name=name, parent=ctx)
            sub = cmd.get_command(group_ctx, args[0])
            if sub is None:
                raise DocError(f"{where}: `taskq {' '.join(argv)}`: no command {args[0]!r} in `{' '.join(['taskq', *path])}`")
            ctx, cmd, name = group_ctx, sub, args[0]
            path.append(args.pop(0))
        if isinstance(cmd, click.Group) and not args:
            raise DocError(f"{where}: `taskq {' '.join(argv)}` names a group, not a command")
        with cmd.make_context(name, args, parent=ctx):
            pass
    except click.exceptions.Exit as exc:  # --help, --version
        if exc.exit_code:
            raise DocError(f"{where}: `taskq {' '.join(argv)}` exits {exc.exit_code}") from None
    except click.ClickException as exc:
        raise DocError(f"{where}: `taskq {' '.join(argv)}` does not parse: {exc.format_message()}") from None
    return tuple(path)


def _pyproject_extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


def check_pip(args: list[str], where: str) -> None:
    if not args or args[0] != "install":
        raise DocError(f"{where}: only `pip install` is documented, not `pip {' '.join(args)}`")
    extras = _pyproject_extras()
    for i, a in enumerate(args):
        if args[i - 1] == "-c" and not (ROOT / a).exists():
            raise DocError(f"{where}: constraints file {a} does not exist")
        m = re.fullmatch(r"(?:\.|taskq)\[([\w,\-]+)\]", a)
        if m:
            unknown = set(m[1].split(",")) - extras
            if unknown:
                raise DocError(f"{where}: pip extra(s) {sorted(unknown)} not in pyproject.toml ({sorted(extras)})")


def _module_help(module: str) -> str:
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.stdout + proc.stderr


def check_python(args: list[str], where: str) -> list[str] | None:
    """A ``python ...`` command; returns the taskq argv for ``python -m taskq_cli.main``."""
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module == "venv":
            return None
        if module == "pip":
            check_pip(rest, where)
            return None
        if module == "taskq_cli.main":
            return rest
        if module == "benchmarks":
            from benchmarks.__main__ import parse

            try:
                parse(rest)
            except SystemExit as exc:
                raise DocError(f"{where}: `python -m benchmarks {' '.join(rest)}` does not parse") from exc
            return None
        if module == "pytest":
            for a in rest:
                if not a.startswith("-") and not (ROOT / a.split("::")[0]).exists():
                    raise DocError(f"{where}: pytest path {a} does not exist")
            return None
        sys.path.insert(0, str(ROOT))
        try:
            found = importlib.util.find_spec(module)
        finally:
            sys.path.remove(str(ROOT))
        if found is None:
            raise DocError(f"{where}: no module {module}")
        flags = [a.split("=")[0] for a in rest if a.startswith("--")]
        if flags:
            text = _module_help(module)
            missing = [f for f in flags if f not in text]
            if missing:
                raise DocError(f"{where}: `python -m {module}` has no option(s) {missing}")
        return None
    if args and args[0].endswith(".py"):
        script = ROOT / args[0]
        if not script.exists():
            raise DocError(f"{where}: {args[0]} does not exist")
        if script.parent.name == "examples" and script.stem not in (ROOT / "tests" / "test_examples.py").read_text():
            raise DocError(f"{where}: {args[0]} is not run by tests/test_examples.py")
        return None
    raise DocError(f"{where}: no rule for `python {' '.join(args)}`")


def split_commands(tokens: list[str]) -> Iterator[list[str]]:
    """Split shell tokens at ``&&``, ``||``, ``;``, ``|`` and ``&``."""
    cmd: list[str] = []
    for t in tokens:
        if t in {"&&", "||", ";", "|", "&"}:
            if cmd:
                yield cmd
            cmd = []
        else:
            cmd.append(t)
    if cmd:
        yield cmd


def check_command(argv: list[str], where: str) -> tuple[str, ...] | None:
    """Check one command line; returns the taskq subcommand path for a taskq command."""
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):  # VAR=value prefixes
        argv = argv[1:]
    if not argv:
        return None
    prog, args = os.path.basename(argv[0]), argv[1:]
    if prog == "taskq":
        return check_taskq(args, where)
    if re.fullmatch(r"python(3(\.\d+)?)?", prog):
        taskq_args = check_python(args, where)
        return check_taskq(taskq_args, where) if taskq_args is not None else None
    if prog in {"pip", "pip3"}:
        check_pip(args, where)
        return None
    if prog in NOT_RUN_TOOLS:
        return None
    raise DocError(f"{where}: no rule covers the command `{' '.join(argv)}`")


def shell_lines(block: Block) -> Iterator[tuple[int, str]]:
    """(line number, command) of a shell block, continuations joined, output of ```console skipped."""
    pending, start = "", 0
    for n, raw in enumerate(block.code.splitlines(), block.line + 1):
        line = raw
        if block.lang == "console" and not pending:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text, pending = pending + line, ""
        if text.strip() and not text.lstrip().startswith("#"):
            yield start, text


def tokens_of(text: str, where: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&|;")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError as exc:
        raise DocError(f"{where}: cannot split `{text}`: {exc}") from None


@dataclass
class ShellCommand:
    where: str
    argv: list[str]
    taskq_path: tuple[str, ...] | None

    @property
    def runnable(self) -> bool:
        """A read-only taskq command that the test runs."""
        if self.taskq_path is None:
            return False
        taskq_args = self.taskq_argv
        if "--help" in taskq_args or "--version" in taskq_args:
            return True
        return self.taskq_path in SAFE_TASKQ and "--watch" not in taskq_args

    @property
    def taskq_argv(self) -> list[str]:
        argv = [a for a in self.argv if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", a)]
        return argv[3:] if os.path.basename(argv[0]).startswith("python") else argv[1:]


def shell_commands(block: Block) -> list[ShellCommand]:
    out = []
    for n, text in shell_lines(block):
        where = f"{rel(block.path)}:{n}"
        for argv in split_commands(tokens_of(text, where)):
            out.append(ShellCommand(where, argv, check_command(argv, where)))
    return out


def commands_in_yaml(node: Any) -> Iterator[list[str]]:
    """Every command a YAML document runs: container ``command`` + ``args``,
    ``exec`` probes, compose ``command`` strings and ``healthcheck`` tests."""
    if isinstance(node, dict):
        command = node.get("command")
        if isinstance(command, list) and all(isinstance(x, (str, int)) for x in command):
            yield [str(x) for x in command] + [str(x) for x in node.get("args", [])]
        elif isinstance(command, str):
            yield shlex.split(command)
        test = node.get("test")
        if isinstance(test, list) and test[:1] in (["CMD"], ["CMD-SHELL"]):
            yield test[1:] if test[0] == "CMD" else shlex.split(test[1])
        for v in node.values():
            yield from commands_in_yaml(v)
    elif isinstance(node, list):
        for v in node:
            yield from commands_in_yaml(v)


def containers_in(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield from node.get("containers", []) or []
        for v in node.values():
            yield from containers_in(v)
    elif isinstance(node, list):
        for v in node:
            yield from containers_in(v)


def metrics_port_of(argv: list[str]) -> int | None:
    for i, a in enumerate(argv):
        if a == "--metrics-port":
            return int(argv[i + 1])
        if a.startswith("--metrics-port="):
            return int(a.split("=", 1)[1])
    return None


def check_yaml(block: Block) -> None:
    try:
        docs = [d for d in yaml.safe_load_all(block.code) if d is not None]
    except yaml.YAMLError as exc:
        raise DocError(f"{block.where}: YAML does not load: {exc}") from None
    for doc in docs:
        for argv in commands_in_yaml(doc):
            if argv and os.path.basename(argv[0]) == "taskq":  # other programs (a server image's) are not ours
                check_command(argv, block.where)
        for c in containers_in(doc):
            argv = [str(x) for x in c.get("command", [])] + [str(x) for x in c.get("args", [])]
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                http = (c.get(probe) or {}).get("httpGet")
                if http is None:
                    continue
                port = metrics_port_of(argv)
                if port is None or http.get("port") != port or http.get("path") != "/metrics":
                    raise DocError(f"{block.where}: {c.get('name')}'s {probe} GETs {http.get('path')} on port "
                                   f"{http.get('port')}, but the worker serves /metrics on --metrics-port {port}")
                if "--metrics-host" not in " ".join(argv):
                    raise DocError(f"{block.where}: {c.get('name')}'s metrics listen on 127.0.0.1 only; "
                                   f"the kubelet probes the pod's address: pass --metrics-host 0.0.0.0")


def check_ini(block: Block) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(block.code)
    except configparser.Error as exc:
        raise DocError(f"{block.where}: does not parse as INI: {exc}") from None
    for section in parser.sections():
        for key, value in parser.items(section):
            if key in {"ExecStart", "ExecReload", "ExecStop"}:
                for argv in split_commands(tokens_of(value, block.where)):
                    check_command(argv, block.where)


def check_dockerfile(block: Block) -> None:
    text = re.sub(r"\\\n", " ", block.code)
    for n, line in enumerate(text.splitlines(), block.line + 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        where = f"{rel(block.path)}:{n}"
        if instr.upper() not in DOCKERFILE_INSTRUCTIONS:
            raise DocError(f"{where}: unknown Dockerfile instruction {instr}")
        if instr.upper() in {"RUN", "CMD", "ENTRYPOINT"}:
            rest = rest.strip()
            if rest.startswith("["):
                argv_lists = [json.loads(rest)]
            else:
                argv_lists = list(split_commands(tokens_of(rest, where)))
            for argv in argv_lists:
                check_command(argv, where)


STATIC_CHECKS = {"yaml": check_yaml, "yml": check_yaml, "ini": check_ini, "systemd": check_ini,
                 "dockerfile": check_dockerfile}


# ---------------------------------------------------------------- running a page


def python_code_refuses_urls(block: Block) -> None:
    """A runnable block must take the server from TASKQ_REDIS_URL, never name one."""
    try:
        toks = list(tokenize.generate_tokens(StringIO(block.code).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise DocError(f"{block.where}: python block does not tokenize: {exc}") from None
    for tok in toks:
        if tok.type == tokenize.STRING and re.search(r"(rediss?|unix|valkey)://", tok.string):
            raise DocError(f"{block.where}: python code names a server URL ({tok.string}); take it from "
                           f"TASKQ_REDIS_URL (the test points that at its own server), or show it in a comment")


def compile_check(block: Block, source: str) -> None:
    try:
        compile(source, block.where, "exec")
    except SyntaxError as exc:
        raise DocError(f"{block.where}: python block does not compile: {exc}") from None


@dataclass
class Page:
    path: Path
    files: dict[str, str]
    script: str
    background: list[ShellCommand]
    commands: list[ShellCommand]


def plan(path: Path) -> Page:
    """Check every block of a page statically and collect what to run."""
    files: dict[str, str] = {}
    script: list[str] = []
    background: list[ShellCommand] = []
    commands: list[ShellCommand] = []
    for block in blocks_of(path):
        if block.lang == "python":
            python_code_refuses_urls(block)
            compile_check(block, block.code)
            first = block.code.split("\n", 1)[0]
            m = FILE_HEADER.match(first)
            if m:
                files[m["name"]] = block.code
            else:
                # a marker line names the block in tracebacks
                script.append(f"# --- {block.where}\n" + block.code)
        elif block.lang in SHELL_LANGS:
            cmds = shell_commands(block)
            if "background" in block.words:
                for c in cmds:
                    if c.taskq_path is None:
                        raise DocError(f"{c.where}: only taskq commands can run in the background")
                background += cmds
            else:
                commands += cmds
        elif block.lang in STATIC_CHECKS:
            STATIC_CHECKS[block.lang](block)
        elif block.lang == "text":
            pass
        else:
            what = f"```{block.lang}" if block.lang else "a block without a language"
            raise DocError(f"{block.where}: no rule covers {what}: use python, bash, console, yaml, ini, "
                           f"dockerfile, or text for output (see tests/test_docs.py)")
    return Page(path, files, "\n".join(script), background, commands)


def page_env(redis_url: str, namespace: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env.update({"TASKQ_REDIS_URL": redis_url, "TASKQ_NAMESPACE": namespace, "TASKQ_HOME": str(workdir / ".taskq"),
                "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]), "PYTHONUNBUFFERED": "1"})
    return env


def taskq_cmd(c: ShellCommand) -> list[str]:
    return [sys.executable, "-m", "taskq_cli.main", *c.taskq_argv]


def run_page(page: Page, workdir: Path, redis_url: str, namespace: str) -> None:
    env = page_env(redis_url, namespace, workdir)
    for name, code in page.files.items():
        target = workdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    started: list[tuple[ShellCommand, subprocess.Popen[bytes], Path]] = []
    probe = TaskQ("docs-probe", redis_url, namespace=namespace)
    try:
        for c in page.background:
            log = workdir / f"background-{len(started)}.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen(taskq_cmd(c), cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT)
            started.append((c, proc, log))
        if started:
            wait_for(lambda: probe.workers() or any(p.poll() is not None for _, p, _ in started), 30,
                     what="the page's background worker to register")
            for c, p, log in started:
                if p.poll() is not None:
                    raise DocError(f"{c.where}: `{' '.join(c.argv)}` exited {p.returncode}:\n{log.read_text()}")
        if page.script:
            (workdir / "page_script.py").write_text(page.script)
            proc = subprocess.run([sys.executable, "page_script.py"], cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=PAGE_TIMEOUT)
            if proc.returncode != 0:
                raise DocError(f"{rel(page.path)}: its python blocks failed "
                               f"(exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        for c in page.commands:
            if not c.runnable:
                continue
            proc = subprocess.run(taskq_cmd(c), cwd=workdir, env=env, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise DocError(f"{c.where}: `{' '.join(c.argv)}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    finally:
        for _, p, _ in started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        try:
            probe.backend.delete_namespace()
        finally:
            probe.close()


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_code_blocks_run(path: Path, redis_url: str, namespace: str, tmp_path: Path) -> None:
    if path.name in RUN_ELSEWHERE:
        runner = RUN_ELSEWHERE[path.name]
        assert path.name in (ROOT / runner).read_text(), f"{runner} does not run {path.name}"
        return
    run_page(plan(path), tmp_path, redis_url, namespace)


# ---------------------------------------------------------------- the README's front door


def test_readme_first_command_is_the_demo_on_the_embedded_server() -> None:
    first = next(b for b in blocks_of(ROOT / "README.md") if b.lang in SHELL_LANGS)
    assert "examples/demo.py" in first.code and "TASKQ_REDIS_URL" not in first.code, first.where


def test_readme_is_a_front_door_and_the_index_lists_every_page() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 260
    index = (ROOT / "docs" / "index.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"


def test_relative_links_resolve() -> None:
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}:{n}: broken link {target}"


# ---------------------------------------------------------------- the checks themselves


def test_a_renamed_flag_or_command_fails_the_check() -> None:
    assert check_taskq(["worker", "tasks:app", "-c", "2", "--metrics-port", "9100"], "x") == ("worker",)
    for bad in (["worker", "tasks:app", "--concurrencyy", "2"], ["worker", "tasks:app", "-c", "two"],
                ["periodic", "lst", "tasks:app"], ["status", "tasks:app", "extra"], ["job", "show"]):
        with pytest.raises(DocError):
            check_taskq(bad, "x")
    with pytest.raises(DocError):
        check_python(["-m", "benchmarks", "--only", "nosuchfigure"], "x")
    with pytest.raises(DocError):
        check_command(["make", "docs"], "x")


def test_a_block_without_a_rule_fails_naming_file_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Page\n\ntext\n\n```\ntaskq worker x:app\n```\n")
    with pytest.raises(DocError, match=r"page.md:5: no rule covers a block without a language"):
        plan(page)
    page.write_text("```yaml\ncontainers:\n  - name: w\n    command: [taskq, worker, t:app, --metrics-port, '9100']\n"
                    "    livenessProbe: {httpGet: {path: /metrics, port: 9101}}\n```\n")
    with pytest.raises(DocError, match="--metrics-port"):
        plan(page)
    page.write_text("```console\n$ taskq periodic list tasks:app\nno periodic tasks\n$ taskq status \\\n"
                    "    tasks:app --watch\n```\n")
    commands = plan(page).commands
    assert [c.taskq_path for c in commands] == [("periodic", "list"), ("status",)]
    assert [c.runnable for c in commands] == [True, False]  # --watch runs forever: parsed, not run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deployment_probes_answer_on_a_real_worker(redis_url: str, namespace: str, tmp_path: Path) -> None:
    """The Kubernetes probes of docs/deployment.md, run against a real worker:
    the httpGet probe gets 200 from --metrics-port, the exec probe exits 0,
    and exits non-zero once the server cannot be reached."""
    blocks = [b for b in blocks_of(ROOT / "docs" / "deployment.md") if b.lang == "yaml"]
    containers = [c for b in blocks for d in yaml.safe_load_all(b.code) if d for c in containers_in(d)]
    worker = next(c for c in containers if c.get("livenessProbe"))
    argv = [str(x) for x in worker["command"]] + [str(x) for x in worker.get("args", [])]
    app_path = argv[argv.index("worker") + 1]
    port = _free_port()
    argv = [a if a != app_path else "tests.apps.basic:app" for a in argv]
    argv[argv.index("--metrics-port") + 1] = str(port)
    argv[argv.index("--metrics-host") + 1] = "127.0.0.1"
    if "-c" in argv:
        argv[argv.index("-c") + 1] = "1"
    env = page_env(redis_url, namespace, tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    assert os.path.basename(argv[0]) == "taskq"
    proc = subprocess.Popen([sys.executable, "-m", "taskq_cli.main", *argv[1:]], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        live = worker["livenessProbe"]["httpGet"]

        def get() -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{live['path']}", timeout=5) as r:
                    return int(r.status)
            except (urllib.error.URLError, ConnectionError):
                return 0

        assert wait_for(get, 30, interval=0.1, what="the liveness probe") == 200
        ready = [str(x) for x in worker["readinessProbe"]["exec"]["command"]]
        ready = [a if a != app_path else "tests.apps.basic:app" for a in ready]
        assert os.path.basename(ready[0]) == "taskq"
        ok = subprocess.run([sys.executable, "-m", "taskq_cli.main", *ready[1:]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["workers"]
        down = {**env, "TASKQ_REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0", "TASKQ_ENQUEUE_RETRY_TIMEOUT": "0.1"}
        bad = subprocess.run([sys.executable, "-m", "taskq_cli.main", *ready[1:]], cwd=ROOT, env=down,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
