"""The CLI leaves without the interpreter's teardown, and without losing anything the user would see."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import run_spyglass, spyglass_env


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_piped_output_atexit_functions_and_threads_all_finish_first(tmp_path):
    done = _python(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from spyglass.leave import leave

        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        def late():
            time.sleep(0.5)
            Path({str(tmp_path / "late")!r}).write_text("written")
        threading.Thread(target=late).start()  # not a daemon: Python waits for it
        sys.stdout.write("x" * 300_000 + "\\nend\\n")  # more than any pipe buffer holds
        leave(3)
    """)
    assert done.returncode == 3
    assert done.stdout.endswith("x\nend\n") and len(done.stdout) == 300_005
    assert "atexit ran" in done.stderr
    assert (tmp_path / "late").read_text() == "written"


def test_exit_codes_are_those_of_sys_exit():
    for argument, status, said in (("None", 0, ""), ("0", 0, ""), ("2", 2, ""), ("'no such thing'", 1, "no such thing")):
        done = _python(f"""
            import sys
            from spyglass.leave import leave
            print("out")
            leave({argument})
        """)
        assert (done.returncode, done.stdout, done.stderr.strip()) == (status, "out\n", said)


def test_the_real_command_in_a_fresh_interpreter(sqlite_settings, media):
    env = spyglass_env(sqlite_settings)
    empty = run_spyglass("search", "a cat", env=env, isolated=True)
    assert empty.returncode == 1 and "spyglass index" in empty.stderr and "Traceback" not in empty.stderr
    indexed = run_spyglass("index", "--no-progress", str(media), env=env, isolated=True)
    assert indexed.returncode == 0, indexed.stderr
    found = run_spyglass("search", "--json", "-k", "3", "a cat", env=env, isolated=True)
    assert found.returncode == 0 and found.stdout.rstrip().endswith("}"), found.stderr
