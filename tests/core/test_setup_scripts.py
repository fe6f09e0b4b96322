"""The two set-ups of the README's first lines: `scripts/setup.sh` installs what the headless
runner needs and nothing else (no Debian packages, no test tools); `scripts/setup.sh --test`
adds the test tools and, as root, chromium; CI runs exactly the README's test command.

setup.sh runs here for real, in a copy of the scripts with a stand-in .venv/bin/python and
apt-get that write down how they were called, on a PATH without chromium."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_TOOLS = {"pytest", "selenium", "matplotlib", "comfyui-frontend-package", "comfyui-workflow-templates"}


def requirement_names(name: str) -> set:
    """The package names a requirements file installs, following its -r lines."""
    names = set()
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(line[3:].strip())
        elif line:
            names.add(line.split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip().lower())
    return names


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_setup(tmp_path: Path, *args: str, uid: int = 0):
    """setup.sh with stand-ins; returns (exit code, the stand-in python's calls, apt-get's calls)."""
    repo, bin_ = tmp_path / "repo", tmp_path / "bin"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".venv" / "bin").mkdir(parents=True)
    bin_.mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    log = tmp_path / "calls.log"
    executable(repo / ".venv" / "bin" / "python",
               f'#!/bin/bash\necho "python $*" >> {log}\n[ "$1" = - ] && while read -r _; do :; done\nexit 0\n')
    executable(bin_ / "apt-get", f'#!/bin/bash\necho "apt-get $*" >> {log}\n')
    executable(bin_ / "id", f"#!/bin/bash\necho {uid}\n")
    for tool in ("dirname", "grep"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(["/bin/bash", str(repo / "scripts" / "setup.sh"), *args], capture_output=True,
                          text=True, timeout=60, env={"PATH": str(bin_), "HOME": str(tmp_path)})
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, [c for c in calls if c.startswith("python")], [c for c in calls if c.startswith("apt-get")]


def test_the_main_setup_installs_the_runners_packages_and_no_debian_packages(tmp_path):
    proc, python, apt = run_setup(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert apt == [], apt  # not even as root with no chromium on the PATH
    installs = [c for c in python if " -r " in c]
    assert installs == ["python -m pip install -q torch==2.13.0 -r requirements-run.txt"], python
    assert "chromium" not in proc.stderr


def test_the_test_setup_adds_the_test_tools_and_chromium_as_root(tmp_path):
    proc, python, apt = run_setup(tmp_path, "--test")
    assert proc.returncode == 0, proc.stderr
    assert any("install" in c and "chromium chromium-driver" in c for c in apt), apt
    assert [c for c in python if " -r " in c] == ["python -m pip install -q torch==2.13.0 -r requirements-test.txt"]


def test_the_test_setup_not_as_root_says_what_to_install_instead(tmp_path):
    proc, python, apt = run_setup(tmp_path / "user", "--test", uid=1000)
    assert proc.returncode == 0 and apt == [] and "install chromium and chromium-driver" in proc.stderr


def test_an_unknown_argument_is_refused(tmp_path):
    proc, python, apt = run_setup(tmp_path, "--tests")
    assert proc.returncode == 2 and "usage: bash scripts/setup.sh [--test]" in proc.stderr and python == []


def test_the_runners_requirements_hold_no_test_tools_and_the_tests_have_all_of_them():
    run, test = requirement_names("requirements-run.txt"), requirement_names("requirements-test.txt")
    assert not run & TEST_TOOLS, run & TEST_TOOLS
    assert TEST_TOOLS <= test and run <= test
    assert {"einops", "safetensors", "transformers", "torchsde", "av"} <= run


def test_ci_runs_exactly_the_readmes_test_command_and_the_main_command_sets_up_without_tests():
    block = (REPO / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    main, tests = (line.split("#")[0].strip() for line in block[:2])
    assert main.startswith("bash scripts/setup.sh && ") and "--test" not in main, main
    assert tests == "bash scripts/setup.sh --test && bash scripts/test.sh", tests
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [tests], ci


def test_the_test_command_says_how_to_get_the_test_tools_when_they_are_missing(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "test.sh", repo / "scripts" / "test.sh")
    executable(repo / ".venv" / "bin" / "python", "#!/bin/bash\nexit 1\n")  # imports nothing
    proc = subprocess.run(["/bin/bash", str(repo / "scripts" / "test.sh")], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ))
    assert proc.returncode == 1 and "bash scripts/setup.sh --test" in proc.stderr, proc.stderr
