"""Tests of scripts/failure-excerpt on logs shaped like bin/test's stages' output."""

import subprocess

from script_loader import SCRIPTS_DIR, load_script

SCRIPT = SCRIPTS_DIR / "failure-excerpt"
excerpt = load_script("failure-excerpt")

# A molecule stage whose verify failed: converge output, pytest's report,
# then molecule's destroy step.
VERIFY_FAILED = """\
TASK [proxy : Install configurable-http-proxy] *********************************
ok: [debian12]
INFO     [default > verify] Executing Testinfra tests found in tests/...
tests/test_browser.py F.                                                 [100%]

=================================== FAILURES ===================================
_____ test_a_user_logs_in_runs_a_cell_in_jupyterlab_and_logs_out[debian13] _____
E           AssertionError: running '6 * 7' did not show '42'
../_shared/chromium.py:141: AssertionError
=========================== short test summary info ============================
FAILED tests/test_browser.py::test_a_user_logs_in[debian13] - AssertionError: running
========================= 1 failed, 1 passed in 130.2s (0:02:10) ===============
INFO     [default > destroy] Executing

TASK [Remove the scenario's containers] ****************************************
changed: [localhost]
"""

# A converge that failed: Ansible's result in YAML, then the recap.
CONVERGE_FAILED = """\
TASK [jupyterhub : Check the settings] *****************************************
\x1b[0;31mfatal: [debian12]: FAILED! => \x1b[0m
    changed: false
    msg: jupyterhub_spawner_kind must be one of local, systemd, docker
ok: [debian13]
    not part of any failure
PLAY RECAP *********************************************************************
CRITICAL Ansible return code was 2, command was: ansible-playbook converge.yml
"""


def test_a_failed_verify_keeps_pytest_report_and_result_line():
    lines = excerpt.failure_lines(VERIFY_FAILED.splitlines())
    assert lines[0] == "=" * 35 + " FAILURES " + "=" * 35
    assert "E           AssertionError: running '6 * 7' did not show '42'" in lines
    assert any(line.startswith("FAILED tests/test_browser.py::") for line in lines)
    assert lines[-1].startswith("========================= 1 failed, 1 passed in 130.2s")
    assert not any("Remove the scenario's containers" in line for line in lines)
    assert not any(line.startswith("ok: [") for line in lines)


def test_a_failed_task_keeps_its_yaml_result_without_colour_codes():
    lines = excerpt.failure_lines(CONVERGE_FAILED.splitlines())
    assert lines == [
        "fatal: [debian12]: FAILED! => ",
        "    changed: false",
        "    msg: jupyterhub_spawner_kind must be one of local, systemd, docker",
        "CRITICAL Ansible return code was 2, command was: ansible-playbook converge.yml",
    ]


def test_a_passing_log_gives_only_pytest_result_line():
    result_line = "========== 42 passed in 80.1s =========="
    assert excerpt.failure_lines(["ok: [debian12]", result_line]) == [result_line]
    assert excerpt.failure_lines(["ok: [debian12]", "changed: [debian13]"]) == []


def test_long_excerpts_keep_their_beginning_and_end():
    lines = [f"E   line {n}" for n in range(1, 301)]
    short = excerpt.shorten(lines, 200)
    assert len(short) == 201
    assert short[119] == "E   line 120"
    assert short[120] == "[... 100 lines left out ...]"
    assert short[121] == "E   line 221"
    assert short[-1] == "E   line 300"
    assert excerpt.shorten(lines[:5], 200) == lines[:5]


def test_the_command_prints_the_excerpt_of_a_log_file(tmp_path):
    log = tmp_path / "molecule_default.log"
    log.write_text(CONVERGE_FAILED)
    result = subprocess.run([str(SCRIPT), str(log)], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[0] == "fatal: [debian12]: FAILED! => "
    assert subprocess.run([str(SCRIPT)], capture_output=True).returncode == 2


def test_a_log_without_known_failure_lines_gives_its_end(tmp_path):
    log = tmp_path / "lint.log"
    log.write_text("".join(f"finding {n}\n" for n in range(1, 101)) + "Found 100 errors.\n")
    result = subprocess.run([str(SCRIPT), str(log)], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 60
    assert (lines[0], lines[-1]) == ("finding 42", "Found 100 errors.")


def test_molecule_s_terminal_bars_and_colours_are_looked_through():
    on_a_terminal = [
        "\x1b[2m\u2502\x1b[0m TASK [Check the settings]",
        "  \x1b[2m\u2502\x1b[0m \x1b[0;31mfatal: [debian12]: FAILED! => \x1b[0m",
        "  \u2502     msg: no such kernel",
        "  \u2502 ok: [debian13]",
        "  \u2502 ================== 1 failed, 36 passed, 14 skipped in 79.79s (0:01:19)",
    ]
    assert excerpt.failure_lines(on_a_terminal) == [
        "fatal: [debian12]: FAILED! => ",
        "    msg: no such kernel",
        "================== 1 failed, 36 passed, 14 skipped in 79.79s (0:01:19)",
    ]
