"""The README, docs/ and examples/README.md stay true to the code: every `python -m pipelines` (or `keras-pipelines`)
command they show parses with the CLI's own parser and names a real task, and a `run` or `sweep` resolves to a valid
config (its `--set` keys and values checked as a real run checks them, before anything is read); every relative link
points to a file that exists, and every `#anchor` to a heading of that file. Nothing trains: the module takes seconds.

Synopsis forms are read as their first choice: `[--format text|markdown|csv]` as `--format text`, `[TASK]` as
`TASK`, `INPUT...` as `INPUT`, `N` as a number. Placeholders in capitals (`TASK`, `URI`, `SOURCE`) parse as given.
"""

import pathlib
import re
import shlex

import pytest

import tasks
from pipelines import cli, config as config_module

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "examples" / "README.md"]
PREFIXES = ("python -m pipelines", "keras-pipelines")
PLACEHOLDER_TASKS = {"TASK"}


def fenced_blocks(text):
    """Returns:
    list[str]: the contents of every ``` fenced code block in a Markdown text.
    """
    return re.findall(r"^ *```[^\n]*\n(.*?)^ *```", text, flags=re.M | re.S)


def prose(text):
    """Returns:
    str: the text without its fenced code blocks (where headings and links are read)."""
    return re.sub(r"^ *```[^\n]*\n.*?^ *```", "", text, flags=re.M | re.S)


def commands_in(text):
    """Every CLI command of a Markdown text: in fenced blocks (continuation lines joined) and in inline code.

    Returns:
        list[str]: each command from its prefix to the end of its shell command (a closing quote when it sits
            inside `sh -c '...'`, a `#` comment, `&`, `;`, or the end of the line).
    """
    lines = []
    for block in fenced_blocks(text):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`([^`\n]+)`", prose(text))
    found = []
    for line in lines:
        for prefix in PREFIXES:
            for match in re.finditer(rf"(?<![\w/.-]){re.escape(prefix)}(?![\w-])", line):
                before = line[: match.start()]
                rest = line[match.start() :]
                quote = _open_quote(before)
                if quote:
                    rest = rest.split(quote)[0]
                words = rest[len(prefix) :].split()
                if len(words) > 1 or words == ["list"]:  # not a name in prose: `python -m pipelines`, `... run`
                    found.append(rest)
    return found


def _open_quote(text):
    """Returns:
    str | None: the quote character left open at the end of `text` (shell rules, roughly), else None.
    """
    quote = None
    for char in text:
        if quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
    return quote


def arguments(command):
    """Returns:
    list[str]: the command's arguments after its prefix, synopsis forms read as their first choice.
    """
    prefix = next(prefix for prefix in PREFIXES if command.startswith(prefix))
    text = command[len(prefix) :]
    text = re.sub(r"(?<=[^\s|])\\?\|[^\s\]]+", "", text)  # a|b|c -> a (a shell pipe has spaces around it)
    text = re.sub(r"(?<!\S)\[((?:--?[\w-]+|[A-Z][A-Z_]*)[^\]]*)\]", r"\1", text)  # [--opt VALUE], [TASK]
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word in {"&", "&&", ";", "|", "||", ">", ">>", "<"}:
            break
        words.append(word)
    words = [word[:-3] if word.endswith("...") and len(word) > 3 else word for word in words if word != "..."]
    return ["2" if word == "N" else word for word in words]


def _commands():
    cases = []
    for page in PAGES:
        for command in commands_in(page.read_text()):
            cases.append(pytest.param(command, id=f"{page.relative_to(ROOT)}: {command[:90]}"))
    return cases


COMMANDS = _commands()


def test_the_docs_show_commands_of_every_kind():
    kinds = {arguments(case.values[0])[0] for case in COMMANDS if arguments(case.values[0])}
    assert kinds >= {"list", "run", "sweep", "predict", "export", "evaluate", "compare"}, kinds


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_parses_and_resolves(command):
    argv = arguments(command)
    try:
        parsed = cli.parser().parse_args(argv)
    except SystemExit as exit:  # argparse's way of refusing
        pytest.fail(f"the CLI's parser refuses {argv}: exit {exit.code}")
    task = getattr(parsed, "task", None)
    if task is None or task in PLACEHOLDER_TASKS:
        return
    if not (task == "all" and parsed.command == "run"):
        assert task in tasks.names(), f"{command!r} names no task '{task}'"
    # a command continuing a logged model resolves over that model's config, which no store here holds
    if parsed.command in ("run", "sweep") and not parsed.config and not getattr(parsed, "init_from", None):
        for name in tasks.names() if task == "all" else [task]:
            try:
                config_module.resolve(
                    tasks.get(name),
                    quick=parsed.quick,
                    assignments=parsed.set,
                    data=parsed.data,
                    seed=parsed.seed,
                    preset=getattr(parsed, "preset", None),
                )
            except ValueError as error:  # a file of the reader's own (vectors, say) is checked at once: not here
                named = re.search(r"'([^']+)' does not exist", str(error))
                if not (named and named.group(1) in command):
                    raise
    if parsed.command == "evaluate":
        known = set(config_module.field_types(tasks.get(task).config_class))
        keys = {assignment.split("=", 1)[0] for assignment in parsed.set}
        assert keys <= known, f"{command!r} sets unknown key(s) {sorted(keys - known)}"


def test_the_synopsis_reader():
    assert arguments("python -m pipelines compare [TASK] [--limit N] [--format text|markdown|csv]") == [
        "compare",
        "TASK",
        "--limit",
        "2",
        "--format",
        "text",
    ]
    assert arguments("python -m pipelines predict TASK --model URI [--output F.csv\\|F.jsonl] INPUT...") == [
        "predict",
        "TASK",
        "--model",
        "URI",
        "--output",
        "F.csv",
        "INPUT",
    ]
    assert arguments("python -m pipelines run fraud_detection --set 'drop_columns=[Time]' &") == [
        "run",
        "fraud_detection",
        "--set",
        "drop_columns=[Time]",
    ]
    assert commands_in("```\nsh -c 'X=1 exec python -m pipelines run speech --quick'\n```\n") == [
        "python -m pipelines run speech --quick"
    ]


def slug(heading):
    """Returns:
    str: GitHub's anchor for a Markdown heading's text.
    """
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page):
    """Returns:
    set[str]: the anchors of a Markdown file's headings (GitHub numbers repeated ones -1, -2, ...).
    """
    found, counts = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", prose(page.read_text()), flags=re.M):
        base = slug(heading)
        found.add(f"{base}-{counts[base]}" if base in counts else base)
        counts[base] = counts.get(base, 0) + 1
    return found


def links(page):
    """Returns:
    list[str]: the relative link targets of a Markdown file, outside code.
    """
    text = re.sub(r"`[^`\n]*`", "", prose(page.read_text()))
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, broken


def test_the_readme_is_a_guide():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert "## Contents" in readme
    assert "\n```\npython -m pytest\n```\n" in readme, "CI runs exactly the README's test command (.ci/run)"
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    missing = [str(page.relative_to(ROOT)) for page in PAGES[1:] if page.resolve() not in linked]  # every docs page
    assert not missing, f"README links to no {missing}"
