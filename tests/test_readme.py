"""The README tells the truth: its API snippet, run verbatim from README.md, reaches at least
85 % test accuracy on the chip and prints it."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def api_snippet() -> str:
    """The first ``python`` block after the heading "A few lines of API"."""
    text = README.read_text(encoding="utf-8")
    head = text.index("## A few lines of API")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, head)
    assert match is not None, "README.md lost its API snippet"
    return match.group(1)


def test_readme_api_snippet_reaches_85_percent_on_the_chip(capsys):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(api_snippet(), str(README), "exec"), {"__name__": "readme"})
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("completed Ledger(reconfigurations=1000"), out
    found = re.search(r"test accuracy on the chip: ([0-9.]+)%", out)
    assert found is not None, out
    assert float(found.group(1)) >= 85.0, out
