"""Every command the README shows is run by a test or by CI: this table says where, and the test fails
when the README gains a command that nothing runs (or a listed test stops running it)."""

import re
import shlex

from conftest import ROOT

# README command (its first words) -> where it runs, and the words that show it runs there
RUN_BY = {
    "make repro": (".ci/run", "make test"),  # = make install (run by `make test`) + dvc repro (tests/test_dag.py)
    "make test": (".ci/run", "make test"),
    "make smoke": ("tests/test_dag.py", '"mdeaux", "smoke"'),  # = mdeaux smoke
    "make ui": ("tests/test_dag.py", '"mdeaux", "ui"'),  # = mdeaux ui
    "make push": ("tests/test_dag.py", '"mdeaux", "store", "push"'),  # = dvc push + mdeaux store push
    "make pull": ("tests/test_dag.py", '"mdeaux", "store", "pull"'),  # = dvc pull + mdeaux store pull
    "mdeaux report": ("tests/test_dag.py", '"mdeaux", "report"'),
    "mdeaux runs": ("tests/test_dag.py", '"mdeaux", "runs"'),
    "mdeaux runs --cost": ("tests/test_dag.py", '"mdeaux", "runs", "--cost"'),
    "mdeaux train": ("tests/test_dag.py", '"mdeaux", "train"'),
    "dvc repro": ("tests/test_dag.py", '"dvc", "repro"'),
    "dvc plots show": ("tests/test_dag.py", '"dvc", "plots", "show"'),
    "dvc plots diff": ("tests/test_dag.py", '"dvc", "plots", "diff"'),
    "dvc exp diff": ("tests/test_dag.py", '"dvc", "exp", "diff"'),
    "dvc exp show": ("tests/test_dag.py", '"dvc", "exp", "show", "--drop"'),
    "dvc exp run": ("tests/test_dag.py", '"dvc", "exp", "run"'),
    "dvc queue start": ("tests/test_dag.py", '"dvc", "queue", "start"'),
    "dvc remote add": ("tests/test_dag.py", '"dvc", "remote", "add"'),
    "git add": ("tests/test_dag.py", '"git", "add"'),
    "git commit": ("tests/test_dag.py", '"git", "commit"'),
    "snakemake --profile": ("tests/test_snakemake.py", '"snakemake", "--profile"'),
    "python -c": ("tests/test_dag.py", "README_MLFLOW_SEARCH"),
}


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks (one per line, `&&` chains split, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        block = re.sub(r"\n\s+", " ", block)  # continuation lines
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def covering(command: str) -> str | None:
    """The longest RUN_BY key that ``command`` starts with."""
    words = shlex.split(command, posix=False)
    keys = [k for k in RUN_BY if words[: len(k.split())] == k.split()]
    return max(keys, key=len) if keys else None


def test_every_readme_command_is_run_somewhere():
    commands = readme_commands()
    assert len(commands) > 15
    missing = [c for c in commands if covering(c) is None]
    assert missing == [], f"README commands that no test or CI step runs (add them to RUN_BY): {missing}"
    for command in commands:
        where, words = RUN_BY[covering(command)]
        assert words in (ROOT / where).read_text(), f"{where} no longer runs `{command}` ({words!r} not found)"


def test_the_mlflow_search_of_the_readme_is_the_one_the_dag_test_runs():
    from test_dag import README_MLFLOW_SEARCH

    assert README_MLFLOW_SEARCH in (ROOT / "README.md").read_text()
