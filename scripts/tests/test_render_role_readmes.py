"""Tests of scripts/render-role-readmes on a fixture role."""

import pytest
from script_loader import load_script

render = load_script("render-role-readmes")

SPECS = """\
---
argument_specs:
  main:
    short_description: Fixture role
    options:
      demo_port:
        type: int
        default: 8000
        description: TCP port the service listens on.
      demo_mode:
        type: str
        default: fast
        choices: [fast, safe]
        description:
          - How to run;
          - a | in text must not break the table.
      demo_users:
        type: list
        elements: str
        default: []
        description: Users allowed in.
      demo_secret:
        type: str
        required: true
        description: The secret.
"""


@pytest.fixture
def role(tmp_path):
    meta = tmp_path / "roles" / "demo" / "meta"
    meta.mkdir(parents=True)
    (meta / "argument_specs.yml").write_text(SPECS)
    readme = tmp_path / "roles" / "demo" / "README.md"
    readme.write_text(
        f"# demo\n\n## Variables\n\n{render.BEGIN}\nstale\n{render.END}\n\n## Example\n"
    )
    return tmp_path / "roles", readme


def test_check_reports_stale_readme_then_render_fixes_it(role, capsys):
    roles_dir, readme = role
    assert render.main(["--check", "--roles-dir", str(roles_dir)]) == 1
    assert "README.md is out of date" in capsys.readouterr().err
    assert render.main(["--roles-dir", str(roles_dir)]) == 0
    assert render.main(["--check", "--roles-dir", str(roles_dir)]) == 0

    text = readme.read_text()
    assert "stale" not in text
    assert text.endswith(f"{render.END}\n\n## Example\n")
    assert "| `demo_port` | int | `8000` |  | TCP port the service listens on. |" in text
    assert (
        "| `demo_mode` | str | `fast` | `fast`, `safe` |"
        " How to run; a \\| in text must not break the table. |"
    ) in text
    assert "| `demo_users` | list of str | `[]` |" in text
    assert "| `demo_secret` | str | *required* |" in text


def test_readme_without_markers_is_an_error(role, capsys):
    roles_dir, readme = role
    readme.write_text("# demo\n")
    assert render.main(["--roles-dir", str(roles_dir)]) == 1
    assert "needs the markers" in capsys.readouterr().err
